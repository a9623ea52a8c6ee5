"""Errors of the host's side: one root, the transport's failures, and CHECK CONDITION by sense key.

Every CHECK CONDITION becomes a :class:`CheckCondition` subclass chosen by the sense key (and
for NO SENSE by the filemark / end-of-medium bits), carrying the parsed sense data: SK,
ASC/ASCQ, the T10000 FSC and, for a missing key, the key ID. Callers catch the class they
can handle (``EndOfData`` ends a listing, ``FilemarkDetected`` a read) and let the rest
propagate as one line a person can act on.
"""

from __future__ import annotations

from typing import Any


class HostError(Exception):
    """Root of the host side's errors."""


class TransportError(HostError):
    """The drive could not be reached over iSCSI, or the session failed."""


class CommandFailed(HostError):
    """A command ended with a status other than GOOD or CHECK CONDITION (BUSY, RESERVATION CONFLICT...)."""

    def __init__(self, command: str, status: int) -> None:
        super().__init__(f"{command}: the drive answered status 0x{status:02x}; try again when it is free")
        self.command, self.status = command, status


class BackupError(HostError):
    """A backup, list, restore or verify that cannot be done; the message says why."""


class CheckCondition(HostError):
    """A command ended with CHECK CONDITION; ``sense`` is the parsed sense data."""

    what = "the drive refused the command"

    def __init__(self, command: str, sense: Any, data: bytes = b"") -> None:
        self.command, self.sense, self.data = command, sense, data
        super().__init__(f"{command}: {self.what} (sense {describe(sense)})")

    @property
    def key_id(self) -> bytes | None:
        """The key ID the drive reported (a missing key), if any."""
        key_id = getattr(self.sense, "key_id", None)
        return bytes(key_id) if key_id and any(key_id) else None


class FilemarkDetected(CheckCondition):
    what = "a filemark was read"


class IncorrectLength(CheckCondition):
    what = "the block on tape is longer than the length asked for (ILI)"


class EndOfMedium(CheckCondition):
    what = "end of medium"


class BeginningOfMedium(CheckCondition):
    what = "beginning of medium reached"


class RecoveredError(CheckCondition):
    what = "recovered error"


class NotReady(CheckCondition):
    what = "the drive is not ready (is a cartridge loaded? 't10k tape load --ip IP VOLSER' loads one)"


class MediumError(CheckCondition):
    what = "medium error"


class HardwareError(CheckCondition):
    what = "hardware error"


class IllegalRequest(CheckCondition):
    what = "the drive does not support this command or field"


class UnitAttention(CheckCondition):
    what = "unit attention (the drive was reset or the medium changed)"


class DataProtect(CheckCondition):
    what = "data protect"


class EndOfData(CheckCondition):
    what = "end of data"


class VolumeOverflow(CheckCondition):
    what = "the tape is full"


class AbortedCommand(CheckCondition):
    what = "the command was aborted"


def describe(sense: Any) -> str:
    """The seed's notation SK/ASCASCQ/FSC, plus the key ID when the drive gave one."""
    sk, asc, ascq = int(getattr(sense, "sense_key", 0)), getattr(sense, "asc", 0), getattr(sense, "ascq", 0)
    text = f"{sk:x}/{asc:02x}{ascq:02x}/{int(getattr(sense, 'fsc', 0) or 0):04x}"
    key_id = getattr(sense, "key_id", None)
    if key_id and any(key_id):
        text += f", key ID {bytes(key_id).hex()}"
    return text
