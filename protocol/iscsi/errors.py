"""iSCSI's branch of the protocol exception tree.

Every malformed input raises :class:`IscsiDecodeError` (a :class:`protocol.DecodeError`),
whose :attr:`reason` a target counts; :attr:`reject` says whether the PDU can be answered
with a Reject (its boundaries are known) or the connection must be dropped.
"""

from __future__ import annotations

import enum

from ..errors import DecodeError, DecodeReason, ProtocolError


class IscsiReason(enum.Enum):
    TRUNCATED = "truncated PDU"
    UNKNOWN_OPCODE = "unknown opcode"
    BAD_FIELD = "invalid PDU field"
    TOO_LARGE = "data segment larger than negotiated"
    HEADER_DIGEST = "header digest mismatch"
    DATA_DIGEST = "data digest mismatch"
    BAD_TEXT = "malformed text key=value data"
    PROTOCOL = "PDU not allowed here"


_BASE_REASON = {
    IscsiReason.TRUNCATED: DecodeReason.TRUNCATED,
    IscsiReason.UNKNOWN_OPCODE: DecodeReason.UNKNOWN_TYPE,
    IscsiReason.TOO_LARGE: DecodeReason.TOO_LARGE,
}


class IscsiDecodeError(DecodeError):
    """The peer sent bytes that are not a valid iSCSI PDU (the remote's fault)."""

    def __init__(self, reason: IscsiReason, detail: str, *, header: bytes = b"", fatal: bool = False) -> None:
        super().__init__(_BASE_REASON.get(reason, DecodeReason.BAD_FIELD), detail)
        self.args = (f"iSCSI {reason.value}: {detail}",)
        self.iscsi_reason = reason
        #: the 48-octet header, when known, to quote in a Reject
        self.header = header
        #: the stream can no longer be trusted: drop the connection rather than Reject
        self.fatal = fatal


class IscsiLocalError(ProtocolError):
    """We asked for something iSCSI cannot express (our own fault)."""


class IscsiError(ProtocolError):
    """A login or session failed for a reason the peer gave; the message says which."""
