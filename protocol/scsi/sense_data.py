"""Fixed-format sense data (SPC-3 4.5.3), with the T10000's fault symptom code and key ID.

Layout (28 octets, additional sense length 20):

======  ==========================================================================
octet   field
======  ==========================================================================
0       VALID (bit 7: INFORMATION is meaningful), response code 70h current / 71h deferred
2       FILEMARK (bit 7), EOM (bit 6), ILI (bit 5), sense key (bits 3-0)
3-6     INFORMATION: the residue (requested minus done; negative for an overlength block)
7       additional sense length (20)
8-11    command-specific information
12, 13  ASC, ASCQ
14      field replaceable unit code
15-17   sense-key specific (SKSV bit 7 of octet 15)
18-19   **FSC**: the vendor fault symptom code of the seed's appendix (e.g. 6109h)
20-27   **key ID**: the 8-octet ID of a missing media key (3/2605/6109), else zero
======  ==========================================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import BitsInteger, BitStruct, Bytes, Default, Flag, Int8ub, Int16ub, Int32sb, Int32ub, Padding, Struct

from ..constants import KEY_ID_SIZE, Asc, SenseResponse
from ..sense import Sense, SenseKey
from ._record import ScsiFormatError

ZERO_KEY = bytes(KEY_ID_SIZE)
SENSE_LENGTH = 28
FSC_OFFSET = 18
KEY_ID_OFFSET = 20

FIXED_SENSE = Struct(
    "head" / BitStruct("valid" / Flag, "response_code" / BitsInteger(7)),
    "segment" / Default(Int8ub, 0),
    "flags" / BitStruct("filemark" / Flag, "eom" / Flag, "ili" / Flag, Padding(1), "sense_key" / BitsInteger(4)),
    "information" / Int32sb,
    "additional_length" / Int8ub,
    "command_specific" / Int32ub,
    "asc" / Int8ub,
    "ascq" / Int8ub,
    "fru" / Default(Int8ub, 0),
    "sense_key_specific" / Bytes(3),
    "fsc" / Int16ub,
    "key_id" / Bytes(KEY_ID_SIZE),
)
assert FIXED_SENSE.sizeof() == SENSE_LENGTH


@dataclass(frozen=True)
class SenseData:
    """Fixed-format sense data. ``information`` None leaves VALID clear."""

    sense_key: int
    asc: int = 0
    ascq: int = 0
    fsc: int = 0
    key_id: bytes = ZERO_KEY
    information: int | None = None
    filemark: bool = False
    eom: bool = False
    ili: bool = False
    deferred: bool = False
    command_specific: int = 0
    sense_key_specific: bytes = bytes(3)

    @classmethod
    def of(cls, sense: Sense, **kw: object) -> SenseData:
        """From the seed's SK/ASC-ASCQ/FSC (protocol.sense.Sense)."""
        return cls(int(sense.sense_key), sense.asc, sense.ascq, sense.fsc, **kw)  # type: ignore[arg-type]

    @classmethod
    def code(cls, sense_key: int, asc: Asc, **kw: object) -> SenseData:
        return cls(sense_key, int(asc) >> 8, int(asc) & 0xFF, **kw)  # type: ignore[arg-type]

    @property
    def asc_ascq(self) -> int:
        return self.asc << 8 | self.ascq

    @property
    def seed(self) -> Sense:
        """The seed's notation back: ``str(sd.seed) == "3/2605/6109"``."""
        return Sense(SenseKey(self.sense_key), self.asc, self.ascq, self.fsc)

    def build(self) -> bytes:
        return FIXED_SENSE.build(dict(
            head=dict(valid=self.information is not None,
                      response_code=SenseResponse.DEFERRED if self.deferred else SenseResponse.CURRENT),
            flags=dict(filemark=self.filemark, eom=self.eom, ili=self.ili, sense_key=self.sense_key),
            information=self.information or 0, additional_length=SENSE_LENGTH - 8,
            command_specific=self.command_specific, asc=self.asc, ascq=self.ascq,
            sense_key_specific=self.sense_key_specific, fsc=self.fsc, key_id=self.key_id,
        ))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> SenseData:
        """Fixed-format sense of any length from 14 octets (shorter ones are zero-filled, so an
        18-octet sense from another device parses too)."""
        raw = bytes(data)
        if len(raw) < 14 or raw[0] & 0x7F not in (SenseResponse.CURRENT, SenseResponse.DEFERRED):
            raise ScsiFormatError(f"not fixed-format sense data: {raw[:8].hex()}")
        c = FIXED_SENSE.parse(raw[:SENSE_LENGTH].ljust(SENSE_LENGTH, b"\0"))
        return cls(c.flags.sense_key, c.asc, c.ascq, c.fsc, c.key_id,
                   c.information if c.head.valid else None, c.flags.filemark, c.flags.eom, c.flags.ili,
                   c.head.response_code == SenseResponse.DEFERRED, c.command_specific, c.sense_key_specific)


#: REQUEST SENSE with nothing to report.
NO_SENSE = SenseData(SenseKey.NO_SENSE)
