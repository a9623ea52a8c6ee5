"""What one SCSI command returns, and the internal CHECK CONDITION."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.constants import Asc
from protocol.scsi import SenseData
from protocol.sense import SenseKey


@dataclass
class ScsiOutcome:
    status: int  # SAM status byte (ScsiStatus)
    #: What the command returns; may be longer than the initiator's expected length (the
    #: transport truncates and reports the residual).
    data_in: bytes | memoryview = b""
    #: Fixed-format sense (70h), only with CHECK CONDITION.
    sense: bytes = b""
    #: A drive_daemon.drive.Output to apply (token error reports, events); opaque to the transport.
    output: object | None = None


class Check(Exception):
    """End the command with CHECK CONDITION, this sense and (for a short read) this data."""

    def __init__(self, sense: SenseData, data: bytes | memoryview = b"") -> None:
        super().__init__(f"{sense.seed}")
        self.sense, self.data = sense, data


def illegal(asc: Asc = Asc.INVALID_FIELD_IN_CDB) -> Check:
    return Check(SenseData.code(SenseKey.ILLEGAL_REQUEST, asc))


def not_ready(asc: Asc = Asc.MEDIUM_NOT_PRESENT) -> Check:
    return Check(SenseData.code(SenseKey.NOT_READY, asc))
