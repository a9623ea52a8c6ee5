"""What the iSCSI target serves: a SCSI logical unit (see SCSI-INTERFACES.md).

The target only moves CDBs, data and status; the SSC device (drive_daemon/ssc/) is the
LUN in service. Tests use small LUNs of their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass
class ScsiOutcome:
    status: int                           # SAM status byte (ScsiStatus)
    data_in: bytes | memoryview = b""     # may be longer than the initiator expects: the transport truncates
    sense: bytes = b""                    # fixed-format sense, only with CHECK CONDITION
    output: object | None = None          # opaque to the transport: handed to the portal's callback


class ScsiLun(Protocol):
    def execute(self, nexus: str, cdb: bytes, data_out: bytes | memoryview | None, now: float) -> ScsiOutcome: ...

    def lun_reset(self, now: float) -> None: ...

    def nexus_lost(self, nexus: str) -> None: ...


#: SAM status codes the transport itself produces.
GOOD = 0x00
CHECK_CONDITION = 0x02

#: INQUIRY and REPORT LUNS opcodes: the two commands the target answers for a LUN it does not have.
INQUIRY = 0x12
REPORT_LUNS = 0xA0

#: ILLEGAL REQUEST, LOGICAL UNIT NOT SUPPORTED (25h/00h), fixed format.
SENSE_LUN_NOT_SUPPORTED = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x25, 0x00, 0, 0, 0, 0])
#: ILLEGAL REQUEST, INVALID FIELD IN CDB (24h/00h): a transfer longer than the target accepts.
SENSE_INVALID_FIELD_IN_CDB = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x24, 0x00, 0, 0, 0, 0])
#: Standard INQUIRY data for a LUN that does not exist (peripheral qualifier 011b, type 1Fh).
INQUIRY_NO_LUN = bytes([0x7F, 0, 0x06, 0x02, 31]) + bytes(31)


def lun_number(field: int) -> int:
    """The LUN of an 8-octet LUN field (single-level, peripheral or flat addressing)."""
    return (field >> 48) & 0x3FFF
