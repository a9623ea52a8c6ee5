"""Sense data the host sees: SK / ASC-ASCQ / FSC, in two profiles.

The T10000 profile reproduces the seed's appendix (firmware codes, with a vendor fault
sense code); the SSC profile gives the standard SSC-3 encryption codes (ASC 74h family)
for hosts that expect them. docs/SENSE.md shows both side by side.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class SenseKey(enum.IntEnum):
    NO_SENSE = 0x0
    RECOVERED_ERROR = 0x1
    NOT_READY = 0x2
    MEDIUM_ERROR = 0x3
    HARDWARE_ERROR = 0x4
    ILLEGAL_REQUEST = 0x5
    UNIT_ATTENTION = 0x6
    DATA_PROTECT = 0x7
    BLANK_CHECK = 0x8


@dataclass(frozen=True)
class Sense:
    sense_key: SenseKey
    asc: int
    ascq: int
    fsc: int = 0

    def __str__(self) -> str:
        """The seed's notation: SK/ASCASCQ/FSC, e.g. 3/2605/6109."""
        return f"{int(self.sense_key):x}/{self.asc:02x}{self.ascq:02x}/{self.fsc:04x}"


class SenseProfile(enum.Enum):
    T10000 = "t10000"
    SSC = "ssc"


class Condition(enum.Enum):
    """Every reason a host command can end with sense data, named once."""

    # The seed's appendix
    NO_KEYS = "encrypting drive without device keys or media keys"
    MISSING_KEY = "a key used to write the tape is not among the drive's media keys"
    ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_READ = "encrypted media in a non-encrypting drive (read, space, locate)"
    ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_WRITE = "append to encrypted media with a non-encrypting drive"
    PLAIN_MEDIA_ON_ENCRYPTING_WRITE = "append to plain media with an encrypting drive"
    # Plain SSC tape conditions (the same in both profiles)
    FILEMARK = "filemark detected"
    END_OF_DATA = "end of data"
    BEGINNING_OF_TAPE = "beginning of tape"
    NO_TAPE = "no tape loaded"
    TAPE_LOADED = "a tape is already loaded"
    UNKNOWN_VOLUME = "no such volume in the library"
    VOLUME_IN_USE = "the volume is loaded in another drive"
    BLOCK_TOO_LARGE = "block larger than the drive's maximum"
    INVALID_REQUEST = "invalid field in the request"
    MEDIUM_CORRUPT = "the cartridge data failed its integrity check"


_COMMON: dict[Condition, Sense] = {
    Condition.FILEMARK: Sense(SenseKey.NO_SENSE, 0x00, 0x01),
    Condition.END_OF_DATA: Sense(SenseKey.BLANK_CHECK, 0x00, 0x05),
    Condition.BEGINNING_OF_TAPE: Sense(SenseKey.NO_SENSE, 0x00, 0x04),
    Condition.NO_TAPE: Sense(SenseKey.NOT_READY, 0x3A, 0x00),
    Condition.TAPE_LOADED: Sense(SenseKey.ILLEGAL_REQUEST, 0x53, 0x02),
    Condition.UNKNOWN_VOLUME: Sense(SenseKey.ILLEGAL_REQUEST, 0x3B, 0x0E),
    Condition.VOLUME_IN_USE: Sense(SenseKey.NOT_READY, 0x04, 0x07),
    Condition.BLOCK_TOO_LARGE: Sense(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00),
    Condition.INVALID_REQUEST: Sense(SenseKey.ILLEGAL_REQUEST, 0x24, 0x00),
    Condition.MEDIUM_CORRUPT: Sense(SenseKey.MEDIUM_ERROR, 0x11, 0x00),
}

PROFILES: dict[SenseProfile, dict[Condition, Sense]] = {
    SenseProfile.T10000: _COMMON | {
        Condition.NO_KEYS: Sense(SenseKey.HARDWARE_ERROR, 0x26, 0x81, 0x343C),
        Condition.MISSING_KEY: Sense(SenseKey.MEDIUM_ERROR, 0x26, 0x05, 0x6109),
        Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_READ: Sense(SenseKey.MEDIUM_ERROR, 0x30, 0x02, 0x0000),
        Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_WRITE: Sense(SenseKey.MEDIUM_ERROR, 0x30, 0x05, 0x32B9),
        Condition.PLAIN_MEDIA_ON_ENCRYPTING_WRITE: Sense(SenseKey.DATA_PROTECT, 0x30, 0x05, 0x32BA),
    },
    SenseProfile.SSC: _COMMON | {
        Condition.NO_KEYS: Sense(SenseKey.DATA_PROTECT, 0x74, 0x00),  # SECURITY ERROR
        Condition.MISSING_KEY: Sense(SenseKey.DATA_PROTECT, 0x74, 0x01),  # UNABLE TO DECRYPT DATA
        Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_READ: Sense(SenseKey.MEDIUM_ERROR, 0x30, 0x02),
        Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_WRITE: Sense(SenseKey.DATA_PROTECT, 0x30, 0x05),
        Condition.PLAIN_MEDIA_ON_ENCRYPTING_WRITE: Sense(SenseKey.DATA_PROTECT, 0x30, 0x05),
    },
}


def sense_for(condition: Condition, profile: SenseProfile = SenseProfile.T10000) -> Sense:
    return PROFILES[profile][condition]
