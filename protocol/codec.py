"""Framing: header, body and, for management frames, the sealing trailer.

``encode`` and ``decode`` are the only way bytes become messages and back.
``decode`` raises only :class:`DecodeError`, naming what was wrong.

A management frame (AUTHENTICATED flag) is sealed: its body is AES-256-GCM ciphertext and
tag under a key derived from the token secret, followed by the replay counter and the
nonce; header and counter are the associated data. Without the secret ``decode`` shows
only its type, lengths and counter (a :class:`SealedBody`); ``open_frame`` (or
``Frame.open``) decrypts and only then parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from construct import ConstructError, StreamError, Struct, Terminated, TerminatedError

from .constants import (
    HEADER_SIZE,
    MAGIC,
    MAX_BODY_LENGTH,
    PROTOCOL_VERSION,
    RETIRED_VERSIONS,
    TAG_SIZE,
    HeaderFlag,
    MessageType,
)
from .errors import DecodeError, DecodeReason, EncodeError
from .fastcodec import fixed_struct, try_build, try_parse
from .layouts import AUTH_TRAILER_SIZE, BODIES, AuthTrailer, Header
from .messages import Message, SealedBody

_KNOWN_FLAGS = int(HeaderFlag.AUTHENTICATED | HeaderFlag.REPLY)
# Trailing octets are an error, so every message has exactly one encoding.
_WHOLE_BODIES = {t: Struct("body" / layout, Terminated) for t, layout in BODIES.items()}
#: The header as one struct call (derived from the Header layout: still declared once).
_HEADER = fixed_struct(Header)
#: Enum members by value, looked up rather than constructed: a capture's decode reads
#: hundreds of thousands of headers, and building an enum member costs a call each.
_TYPES = {int(t): t for t in MessageType}
_FLAGS = {f: HeaderFlag(f) for f in range(_KNOWN_FLAGS + 1) if not f & ~_KNOWN_FLAGS}
_AUTHENTICATED = int(HeaderFlag.AUTHENTICATED)


@dataclass(frozen=True)
class HeaderInfo:
    message_type: MessageType
    flags: HeaderFlag
    sequence: int
    body_length: int

    @property
    def remaining(self) -> int:
        """Bytes that follow the header in this frame (body and any trailer)."""
        trailer = AUTH_TRAILER_SIZE if int(self.flags) & _AUTHENTICATED else 0
        return self.body_length + trailer


@dataclass(frozen=True)
class Frame:
    #: The message, or for a sealed frame not yet opened its :class:`SealedBody`.
    message: Message | SealedBody
    sequence: int
    flags: HeaderFlag
    counter: Optional[int] = None
    #: The whole frame as it arrived: a sealed one is opened from it.
    raw: bytes = field(default=b"", repr=False, compare=False)

    @property
    def authenticated(self) -> bool:
        return bool(self.flags & HeaderFlag.AUTHENTICATED)

    @property
    def sealed(self) -> bool:
        """A management frame not yet opened: its body is still ciphertext."""
        return isinstance(self.message, SealedBody)

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & HeaderFlag.REPLY)

    def open(self, secret: bytes) -> Frame:
        """This frame decrypted under ``secret`` and parsed (AuthenticationError or DecodeError)."""
        if not self.authenticated:
            raise DecodeError(DecodeReason.BAD_FIELD, "message is not authenticated")
        return open_frame(self.raw, secret)


@dataclass(frozen=True)
class Opened:
    """A management frame decrypted under the token secret, its body not yet parsed."""

    info: HeaderInfo
    counter: int
    body: bytes
    raw: bytes

    def frame(self) -> Frame:
        """Parse the plaintext body (DecodeError when it does not decode)."""
        message = decode_body(self.info.message_type, self.body)
        return Frame(message, self.info.sequence, self.info.flags, self.counter, self.raw)


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
    """A sealed management frame: header, AES-256-GCM body (header and counter as associated
    data), then the counter and the nonce."""
    if not 0 <= counter < 2**64:
        raise EncodeError("counter does not fit in 64 bits")
    body = _body(message)
    flags = HeaderFlag.AUTHENTICATED | (HeaderFlag.REPLY if reply else HeaderFlag.NONE)
    header = _header(message.TYPE, flags, sequence, len(body) + TAG_SIZE)
    from .envelope import seal_mgmt  # cryptography is imported by what seals or opens, not by every decoder

    nonce, sealed = seal_mgmt(secret, header, counter, body)
    return header + sealed + AuthTrailer.build(dict(counter=counter, nonce=nonce))


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
    message_type = _TYPES.get(type_)
    if message_type is None:
        raise DecodeError(DecodeReason.UNKNOWN_TYPE, f"type {type_:#04x}")
    known = _FLAGS.get(flags)
    if known is None:
        raise DecodeError(DecodeReason.BAD_FIELD, f"unknown header flags {flags:#06x}")
    if body_length > MAX_BODY_LENGTH:
        raise DecodeError(DecodeReason.TOO_LARGE, f"body of {body_length} octets exceeds {MAX_BODY_LENGTH}")
    return HeaderInfo(message_type, known, sequence, body_length)


def decode(data: bytes) -> Frame:
    """Decode exactly one frame (a whole datagram, or header plus what followed it). A sealed
    management frame decodes to its :class:`SealedBody`: open it with the token secret."""
    info = decode_header(data)
    end = HEADER_SIZE + info.remaining
    if len(data) < end:
        raise DecodeError(DecodeReason.TRUNCATED, f"{info.message_type.name} needs {end} octets, got {len(data)}")
    if len(data) > end:
        raise DecodeError(DecodeReason.LENGTH_MISMATCH, f"{len(data) - end} octets after the {info.message_type.name} frame")
    if int(info.flags) & _AUTHENTICATED:
        if info.body_length < TAG_SIZE:
            raise DecodeError(DecodeReason.TRUNCATED, f"sealed {info.message_type.name} body is shorter than its tag")
        counter, _ = _trailer(data, info)
        return Frame(SealedBody(info.body_length, info.message_type), info.sequence, info.flags, counter, data)
    body = data[HEADER_SIZE : HEADER_SIZE + info.body_length]
    return Frame(decode_body(info.message_type, body), info.sequence, info.flags, None, data)


def _trailer(data: bytes, info: HeaderInfo) -> tuple[int, bytes]:
    """(counter, nonce) of a whole sealed frame."""
    trailer = AuthTrailer.parse(data[HEADER_SIZE + info.body_length :])
    return trailer.counter, trailer.nonce


def authenticate(data: bytes, secret: bytes) -> Opened:
    """Decrypt a whole sealed frame under ``secret``, before its body is parsed.

    Raises DecodeError (not a sealed frame of the length its header declares) or
    AuthenticationError. A forgery costs one AES-GCM check, never a parse of the body.
    """
    info = decode_header(data)
    if not info.flags & HeaderFlag.AUTHENTICATED:
        raise DecodeError(DecodeReason.BAD_FIELD, "message is not authenticated")
    if len(data) != HEADER_SIZE + info.remaining:
        raise DecodeError(DecodeReason.LENGTH_MISMATCH,
                          f"{info.message_type.name} frame is {len(data)} octets, its header says {HEADER_SIZE + info.remaining}")
    if info.body_length < TAG_SIZE:
        raise DecodeError(DecodeReason.TRUNCATED, f"sealed {info.message_type.name} body is shorter than its tag")
    counter, nonce = _trailer(data, info)
    from .envelope import open_mgmt

    body = open_mgmt(secret, data[:HEADER_SIZE], counter, nonce, data[HEADER_SIZE : HEADER_SIZE + info.body_length])
    return Opened(info, counter, body, data)


def open_frame(data: bytes, secret: bytes) -> Frame:
    """A whole sealed frame, decrypted and then parsed (AuthenticationError or DecodeError)."""
    return authenticate(data, secret).frame()


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
