"""The protocol package's exception tree.

Decoding never raises anything but :class:`DecodeError`, so a daemon can catch
one class, count it by :attr:`DecodeError.reason` and keep serving.
"""

from __future__ import annotations

import enum


class ProtocolError(Exception):
    """Root of every error raised by :mod:`protocol`."""


class DecodeReason(enum.Enum):
    BAD_MAGIC = "bad magic"
    UNKNOWN_VERSION = "unknown version"
    UNKNOWN_TYPE = "unknown message type"
    TRUNCATED = "truncated"
    LENGTH_MISMATCH = "length mismatch"
    BAD_FIELD = "bad field value"
    TOO_LARGE = "too large"


class DecodeError(ProtocolError):
    """The peer sent bytes that are not a valid message (the remote's fault)."""

    def __init__(self, reason: DecodeReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason
        self.detail = detail


class EncodeError(ProtocolError):
    """We asked to encode a message that cannot be encoded (our own fault)."""


class CryptoError(ProtocolError):
    """A wrapped key or an authenticator did not verify."""


class BlockKeyExhausted(ProtocolError):
    """A tape block key sealed as many blocks as its nonces allow: start a new write session."""


class UnwrapError(CryptoError):
    """Decryption failed: wrong key, or the data or its binding was altered."""


class AuthenticationError(CryptoError):
    """A MAC did not verify: the sender does not hold the shared secret."""
