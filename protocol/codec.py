"""Framing: header, body and optional authentication trailer.

``encode`` and ``decode`` are the only way bytes become messages and back.
``decode`` raises only :class:`DecodeError`, naming what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from construct import ConstructError, StreamError, Struct, Terminated, TerminatedError

from .constants import HEADER_SIZE, MAGIC, MAX_BODY_LENGTH, PROTOCOL_VERSION, RETIRED_VERSIONS, HeaderFlag, MessageType
from .envelope import mgmt_mac, verify_mgmt_mac
from .errors import DecodeError, DecodeReason, EncodeError
from .fastcodec import fixed_struct, try_build, try_parse
from .layouts import AUTH_TRAILER_SIZE, BODIES, AuthTrailer, Header
from .messages import Message

_KNOWN_FLAGS = int(HeaderFlag.AUTHENTICATED | HeaderFlag.REPLY)
# Trailing octets are an error, so every message has exactly one encoding.
_WHOLE_BODIES = {t: Struct("body" / layout, Terminated) for t, layout in BODIES.items()}
#: The header as one struct call (derived from the Header layout: still declared once).
_HEADER = fixed_struct(Header)


@dataclass(frozen=True)
class HeaderInfo:
    message_type: MessageType
    flags: HeaderFlag
    sequence: int
    body_length: int

    @property
    def remaining(self) -> int:
        """Bytes that follow the header in this frame (body and any trailer)."""
        trailer = AUTH_TRAILER_SIZE if self.flags & HeaderFlag.AUTHENTICATED else 0
        return self.body_length + trailer


@dataclass(frozen=True)
class Frame:
    message: Message
    sequence: int
    flags: HeaderFlag
    counter: Optional[int] = None
    mac: Optional[bytes] = None
    signed: Optional[bytes] = None

    @property
    def authenticated(self) -> bool:
        return self.mac is not None

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & HeaderFlag.REPLY)

    def verify(self, secret: bytes) -> int:
        """Check the MAC under ``secret``; returns the replay counter."""
        if self.mac is None or self.signed is None or self.counter is None:
            raise DecodeError(DecodeReason.BAD_FIELD, "message is not authenticated")
        verify_mgmt_mac(secret, self.signed, self.mac)
        return self.counter


def _body(message: Message) -> bytes:
    body = try_build(message)  # the compiled layouts; None whenever the declared one must decide
    if body is not None:
        return body
    try:
        return BODIES[message.TYPE].build(message)  # type: ignore[no-any-return]
    except (ConstructError, ValueError, KeyError, AttributeError) as exc:
        raise EncodeError(f"cannot encode {type(message).__name__}: {exc}") from exc


def _header(message_type: MessageType, flags: HeaderFlag, sequence: int, body_length: int) -> bytes:
    if not 0 <= sequence < 2**32:
        raise EncodeError(f"sequence {sequence} does not fit in 32 bits")
    return _HEADER.pack(MAGIC, PROTOCOL_VERSION, int(message_type), int(flags), sequence, body_length)


def frame_header(message_type: MessageType, body_length: int, *, sequence: int = 0, reply: bool = False) -> bytes:
    """The header alone, for a body sent separately (a 2 MiB block is not copied to prepend 16 octets)."""
    return _header(message_type, HeaderFlag.REPLY if reply else HeaderFlag.NONE, sequence, body_length)


def encode_body(message: Message) -> bytes:
    """The body alone: what a token stores once per drive and frames per pull."""
    return _body(message)


def frame_body(message_type: MessageType, body: bytes, *, sequence: int = 0, reply: bool = False) -> bytes:
    flags = HeaderFlag.REPLY if reply else HeaderFlag.NONE
    return _header(message_type, flags, sequence, len(body)) + body


def encode(message: Message, *, sequence: int = 0, reply: bool = False) -> bytes:
    return frame_body(message.TYPE, _body(message), sequence=sequence, reply=reply)


def encode_authenticated(
    message: Message, *, secret: bytes, counter: int, sequence: int = 0, reply: bool = False
) -> bytes:
    """Frame with an HMAC-SHA256 trailer over header, body and the replay counter."""
    if not 0 <= counter < 2**64:
        raise EncodeError("counter does not fit in 64 bits")
    body = _body(message)
    flags = HeaderFlag.AUTHENTICATED | (HeaderFlag.REPLY if reply else HeaderFlag.NONE)
    signed = _header(message.TYPE, flags, sequence, len(body)) + body + counter.to_bytes(8, "big")
    return signed + mgmt_mac(secret, signed)


def decode_header(data: bytes) -> HeaderInfo:
    """Check the 16-octet header; stream readers use it to know how much follows."""
    if len(data) < HEADER_SIZE:
        raise DecodeError(DecodeReason.TRUNCATED, f"header needs {HEADER_SIZE} octets, got {len(data)}")
    magic, version, type_, flags, sequence, body_length = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise DecodeError(DecodeReason.BAD_MAGIC, f"expected {MAGIC!r}, got {magic!r}")
    if version != PROTOCOL_VERSION:
        why = RETIRED_VERSIONS.get(version, "")
        raise DecodeError(DecodeReason.UNKNOWN_VERSION,
                          f"version {version}, this build speaks {PROTOCOL_VERSION}" + (f": {why}" if why else ""))
    try:
        message_type = MessageType(type_)
    except ValueError:
        raise DecodeError(DecodeReason.UNKNOWN_TYPE, f"type {type_:#04x}") from None
    if flags & ~_KNOWN_FLAGS:
        raise DecodeError(DecodeReason.BAD_FIELD, f"unknown header flags {flags:#06x}")
    if body_length > MAX_BODY_LENGTH:
        raise DecodeError(DecodeReason.TOO_LARGE, f"body of {body_length} octets exceeds {MAX_BODY_LENGTH}")
    return HeaderInfo(message_type, HeaderFlag(flags), sequence, body_length)


def decode(data: bytes) -> Frame:
    """Decode exactly one frame (a whole datagram, or header plus what followed it)."""
    info = decode_header(data)
    end = HEADER_SIZE + info.remaining
    if len(data) < end:
        raise DecodeError(DecodeReason.TRUNCATED, f"{info.message_type.name} needs {end} octets, got {len(data)}")
    if len(data) > end:
        raise DecodeError(DecodeReason.LENGTH_MISMATCH, f"{len(data) - end} octets after the {info.message_type.name} frame")
    body = data[HEADER_SIZE : HEADER_SIZE + info.body_length]
    message = decode_body(info.message_type, body)
    if info.flags & HeaderFlag.AUTHENTICATED:
        counter, mac, signed = _trailer(data, info)
        return Frame(message, info.sequence, info.flags, counter, mac, signed)
    return Frame(message, info.sequence, info.flags)


def _trailer(data: bytes, info: HeaderInfo) -> tuple[int, bytes, bytes]:
    """(counter, mac, signed octets) of a whole authenticated frame."""
    mac_at = len(data) - AuthTrailer.mac.sizeof()
    trailer = AuthTrailer.parse(data[HEADER_SIZE + info.body_length :])
    return trailer.counter, trailer.mac, data[:mac_at]


def authenticate(data: bytes, secret: bytes) -> tuple[HeaderInfo, int]:
    """Check a whole frame's MAC over its raw octets, before its body is parsed.

    Returns the header and the replay counter; raises DecodeError (not an authenticated
    frame of the length its header declares) or AuthenticationError. A forgery costs one
    HMAC, never a parse of the body.
    """
    info = decode_header(data)
    if not info.flags & HeaderFlag.AUTHENTICATED:
        raise DecodeError(DecodeReason.BAD_FIELD, "message is not authenticated")
    if len(data) != HEADER_SIZE + info.remaining:
        raise DecodeError(DecodeReason.LENGTH_MISMATCH,
                          f"{info.message_type.name} frame is {len(data)} octets, its header says {HEADER_SIZE + info.remaining}")
    counter, mac, signed = _trailer(data, info)
    verify_mgmt_mac(secret, signed, mac)
    return info, counter


def decode_body(message_type: MessageType, body: bytes) -> Message:
    message = try_parse(message_type, body)  # the compiled layouts, when they are sure
    if message is not None:
        return message
    return decode_body_declared(message_type, body)


def decode_body_declared(message_type: MessageType, body: bytes) -> Message:
    """The declared layout's verdict: what every malformed body gets, word for word."""
    try:
        message = _WHOLE_BODIES[message_type].parse(body).body
    except TerminatedError:
        raise DecodeError(DecodeReason.LENGTH_MISMATCH, f"{message_type.name} body has trailing octets") from None
    except StreamError as exc:
        raise DecodeError(DecodeReason.TRUNCATED, f"{message_type.name} body: {_short(exc)}") from None
    except (ConstructError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise DecodeError(DecodeReason.BAD_FIELD, f"{message_type.name} body: {_short(exc)}") from None
    return message  # type: ignore[no-any-return]


def _short(exc: Exception) -> str:
    """construct puts "Error in path ..." first and the reason after it: keep the reason."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith("Error in path")]
    return (" ".join(reasons) or " ".join(lines) or type(exc).__name__)[:200]
