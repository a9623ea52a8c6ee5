"""Byte layouts of every message body, declared once with construct.

All integers are big-endian. Callers never see a construct Container: the
adapters below turn bodies into the dataclasses of :mod:`protocol.messages`.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from construct import (
    Adapter,
    Bytes,
    Construct,
    GreedyBytes,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    PascalString,
    Prefixed,
    PrefixedArray,
    Struct,
    ValidationError,
)

from . import messages as m
from .constants import (
    CHALLENGE_SIZE,
    CLEAR_MAC_SIZE,
    CSN_SIZE,
    HEADER_SIZE,
    KEY_ID_SIZE,
    MAGIC,
    MAX_CLEAR_AUTHORIZATIONS,
    MAX_DATAGRAM,
    MAX_MEDIA_KEYS,
    MAX_POOL_DRIVES,
    NONCE_SIZE,
    RECEIPT_SIZE,
    REPORT_KEY_SIZE,
    REPORT_MAC_SIZE,
    SIGNATURE_SIZE,
    TAG_SIZE,
    VOP_CHALLENGE_SIZE,
    VOP_MAC_SIZE,
    WRAPPED_DEVICE_KEY_SIZE,
    WRAPPED_KEY_SIZE,
    WRAPPED_RECEIPT_SIZE,
    EncryptionLed,
    ErrorCode,
    KeyKind,
    MessageType,
    MgmtStatus,
    NoPackageReason,
    TokenLed,
    TokenMode,
    VopStatusCode,
    Wrapping,
)
from .csn_filter import MAX_FILTER_BITS, CsnFilter

# --- shared adapters ---------------------------------------------------------


class EnumAdapter(Adapter):  # type: ignore[misc]
    """An integer field that only accepts the members of one IntEnum."""

    def __init__(self, subcon: Construct, enum_cls: type[enum.IntEnum]) -> None:
        super().__init__(subcon)
        self.enum_cls = enum_cls

    def _decode(self, obj: int, context: Any, path: str) -> enum.IntEnum:
        try:
            return self.enum_cls(obj)
        except ValueError:
            raise ValidationError(f"{obj:#x} is not a {self.enum_cls.__name__}", path=path) from None

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return int(self.enum_cls(obj))


class DataclassAdapter(Adapter):  # type: ignore[misc]
    """A Struct whose parsed value is a frozen dataclass (lists become tuples)."""

    def __init__(self, subcon: Construct, cls: type) -> None:
        super().__init__(subcon)
        self.cls = cls
        self.names = [f.name for f in dataclasses.fields(cls)]

    def _decode(self, obj: Any, context: Any, path: str) -> Any:
        kwargs = {n: tuple(obj[n]) if isinstance(obj[n], list) else obj[n] for n in self.names}
        try:
            return self.cls(**kwargs)
        except ValueError as exc:
            raise ValidationError(f"{self.cls.__name__}: {exc}", path=path) from None

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        return {n: getattr(obj, n) for n in self.names}


def _dc(cls: type, *fields: Construct) -> Construct:
    return DataclassAdapter(Struct(*fields), cls)


class StrictFlag(Adapter):  # type: ignore[misc]
    """A boolean octet that must be 0 or 1, so every message has one encoding."""

    def _decode(self, obj: int, context: Any, path: str) -> bool:
        if obj not in (0, 1):
            raise ValidationError(f"a flag must be 0 or 1, got {obj}", path=path)
        return bool(obj)

    def _encode(self, obj: Any, context: Any, path: str) -> int:
        return 1 if obj else 0


Flag = StrictFlag(Int8ub)


def Enum8(enum_cls: type[enum.IntEnum]) -> Construct:
    return EnumAdapter(Int8ub, enum_cls)


Csn = Bytes(CSN_SIZE)
KeyId = Bytes(KEY_ID_SIZE)
Nonce = Bytes(NONCE_SIZE)
TokenId = Bytes(m.TOKEN_ID_SIZE)
Timestamp = Int64ub  # microseconds since the Unix epoch, UTC
Text = PascalString(Int16ub, "utf8")

# --- header ------------------------------------------------------------------

Header = Struct(
    "magic" / Bytes(len(MAGIC)),
    "version" / Int8ub,
    "type" / Int8ub,
    "flags" / Int16ub,
    "sequence" / Int32ub,
    "body_length" / Int32ub,
)
assert Header.sizeof() == HEADER_SIZE

#: Trailer of a sealed (management) frame: the replay counter and the AES-GCM nonce. The
#: body before it is ciphertext and tag; header and counter are the associated data.
AuthTrailer = Struct("counter" / Int64ub, "nonce" / Nonce)
AUTH_TRAILER_SIZE = AuthTrailer.sizeof()

# --- bodies ------------------------------------------------------------------

CsnFilterLayout = _dc(CsnFilter, "hash_count" / Int8ub, "bits" / Prefixed(Int16ub, GreedyBytes))

WrappedMediaKeyLayout = _dc(m.WrappedMediaKey, "key_id" / KeyId, "nonce" / Nonce, "wrapped" / Bytes(WRAPPED_KEY_SIZE))
WrappedReceiptLayout = _dc(m.WrappedReceipt, "nonce" / Nonce, "wrapped" / Bytes(WRAPPED_RECEIPT_SIZE))
ClearAuthorizationLayout = _dc(
    m.ClearAuthorization, "csn" / Csn, "device_key_id" / KeyId, "mac" / Bytes(CLEAR_MAC_SIZE)
)

AnnouncementLayout = _dc(
    m.Announcement, "csn_count" / Int32ub, "csn_filter" / CsnFilterLayout, "signature" / Bytes(SIGNATURE_SIZE)
)

DeviceKeyPackageLayout = _dc(
    m.DeviceKeyPackage,
    "csn" / Csn,
    "timestamp" / Timestamp,
    "device_key_id" / KeyId,
    "wrapping" / Enum8(Wrapping),
    "wrapping_key_id" / KeyId,
    "nonce" / Nonce,
    "wrapped" / Bytes(WRAPPED_DEVICE_KEY_SIZE),
)

MediaKeyPackageLayout = _dc(
    m.MediaKeyPackage,
    "csn" / Csn,
    "okt_timestamp" / Timestamp,
    "device_key_id" / KeyId,
    "write_key_id" / KeyId,
    "receipt" / WrappedReceiptLayout,
    "media_keys" / PrefixedArray(Int8ub, WrappedMediaKeyLayout),
)

TokenErrorLayout = _dc(
    m.TokenError, "csn" / Csn, "error_code" / EnumAdapter(Int32ub, ErrorCode), "key_id" / KeyId,
    "reported_at" / Timestamp,
)

BODIES: dict[MessageType, Construct] = {
    MessageType.KEYS_AVAILABLE: _dc(
        m.KeysAvailable,
        "token_id" / TokenId,
        "mode" / Enum8(TokenMode),
        "timestamp" / Timestamp,
        "csn_count" / Int32ub,
        "csn_filter" / CsnFilterLayout,
        "signature" / Bytes(SIGNATURE_SIZE),
    ),
    MessageType.KEY_REQUEST: _dc(
        m.KeyRequest, "csn" / Csn, "kind" / Enum8(KeyKind), "held_timestamp" / Timestamp
    ),
    MessageType.DEVICE_KEY_PACKAGE: DeviceKeyPackageLayout,
    MessageType.MEDIA_KEY_PACKAGE: MediaKeyPackageLayout,
    MessageType.NO_PACKAGE: _dc(
        m.NoPackage, "csn" / Csn, "kind" / Enum8(KeyKind), "reason" / Enum8(NoPackageReason)
    ),
    MessageType.KEY_ACK: _dc(
        m.KeyAck, "csn" / Csn, "kind" / Enum8(KeyKind), "timestamp" / Timestamp,
        "receipt" / Bytes(RECEIPT_SIZE),
    ),
    MessageType.ERROR_REPORT: _dc(
        m.ErrorReport, "csn" / Csn, "error_code" / EnumAdapter(Int32ub, ErrorCode),
        "key_id" / KeyId, "timestamp" / Timestamp, "mac" / Bytes(REPORT_MAC_SIZE),
    ),
    MessageType.CLEAR_KEYS: _dc(
        m.ClearKeys, "token_id" / TokenId, "part" / Int16ub, "parts" / Int16ub,
        "authorizations" / PrefixedArray(Int16ub, ClearAuthorizationLayout),
    ),
    MessageType.WRITE_EKT: _dc(
        m.WriteEkt,
        "timestamp" / Timestamp,
        "entries" / PrefixedArray(Int32ub, _dc(
            m.EktEntry,
            "package" / DeviceKeyPackageLayout,
            "receipt_hash" / Bytes(m.RECEIPT_HASH_SIZE),
            "report_key" / Bytes(REPORT_KEY_SIZE),
            "clear_authorizations" / PrefixedArray(Int8ub, ClearAuthorizationLayout),
        )),
        "announcement" / AnnouncementLayout,
    ),
    MessageType.WRITE_OKT: _dc(
        m.WriteOkt,
        "pool" / Text,
        "okt_timestamp" / Timestamp,
        "entries" / PrefixedArray(Int32ub, _dc(
            m.OktEntry,
            "package" / MediaKeyPackageLayout,
            "receipt_hash" / Bytes(m.RECEIPT_HASH_SIZE),
            "report_key" / Bytes(REPORT_KEY_SIZE),
            "clear_authorizations" / PrefixedArray(Int8ub, ClearAuthorizationLayout),
        )),
        "announcement" / AnnouncementLayout,
    ),
    MessageType.READ_STATUS: _dc(m.ReadStatus),
    MessageType.CLEAR_ERROR: _dc(m.ClearError),
    MessageType.RESYNC: _dc(m.Resync, "challenge" / Bytes(CHALLENGE_SIZE)),
    MessageType.MGMT_RESULT: _dc(m.MgmtResult, "status" / Enum8(MgmtStatus), "message" / Text),
    MessageType.TOKEN_STATUS: _dc(
        m.TokenStatus,
        "token_id" / TokenId,
        "mode" / Enum8(TokenMode),
        "led3" / Enum8(TokenLed),
        "error_led" / Enum8(TokenLed),
        "timestamp" / Timestamp,
        "pool" / Text,
        "csn_count" / Int32ub,
        "packages_held" / Int32ub,
        "acknowledged" / Int32ub,
        "errors" / PrefixedArray(Int32ub, TokenErrorLayout),
        "last_write_counter" / Int64ub,
    ),
    MessageType.MGMT_CHALLENGE: _dc(m.MgmtChallenge, "challenge" / Bytes(CHALLENGE_SIZE)),
    MessageType.VOP_STATUS_REQUEST: _dc(m.VopStatusRequest),
    MessageType.VOP_STATUS: _dc(
        m.VopStatus,
        "csn" / Csn,
        "encrypting_model" / Flag,
        "led" / Enum8(EncryptionLed),
        "encryption_enabled" / Flag,
        "reset" / Flag,
        "need_okt" / Flag,
        "holding_keys" / Flag,
        "okt_timestamp" / Timestamp,
        "device_key_timestamp" / Timestamp,
        "media_key_count" / Int8ub,
        "write_key_id" / KeyId,
    ),
    MessageType.VOP_RESET_DRIVE: _dc(m.VopResetDrive, "challenge" / Bytes(VOP_CHALLENGE_SIZE), "mac" / Bytes(VOP_MAC_SIZE)),
    MessageType.VOP_RESULT: _dc(m.VopResult, "status" / Enum8(VopStatusCode), "message" / Text),
    MessageType.VOP_LOAD: _dc(m.VopLoad, "volser" / PascalString(Int8ub, "ascii")),
    MessageType.VOP_UNLOAD: _dc(m.VopUnload),
    MessageType.VOP_CHALLENGE_REQUEST: _dc(m.VopChallengeRequest),
    MessageType.VOP_CHALLENGE: _dc(m.VopChallenge, "csn" / Csn, "challenge" / Bytes(VOP_CHALLENGE_SIZE)),
}

# --- size caps -----------------------------------------------------------------
# What the largest legitimate request can be, computed from the layouts above, so a stream
# reader refuses a larger declared length from the header alone, before reading the body.

_CLEAR_AUTHS_MAX = 1 + MAX_CLEAR_AUTHORIZATIONS * ClearAuthorizationLayout.sizeof()
_EKT_ENTRY_MAX = DeviceKeyPackageLayout.sizeof() + m.RECEIPT_HASH_SIZE + REPORT_KEY_SIZE + _CLEAR_AUTHS_MAX
_MEDIA_PACKAGE_MAX = (
    Csn.sizeof() + Timestamp.sizeof() + 2 * KeyId.sizeof() + WrappedReceiptLayout.sizeof()
    + 1 + MAX_MEDIA_KEYS * WrappedMediaKeyLayout.sizeof()
)
_OKT_ENTRY_MAX = _MEDIA_PACKAGE_MAX + m.RECEIPT_HASH_SIZE + REPORT_KEY_SIZE + _CLEAR_AUTHS_MAX
_TEXT_MAX = 2 + 4 * m.MAX_TEXT  # a pool name: up to MAX_TEXT characters, 4 octets each in UTF-8
_ANNOUNCEMENT_MAX = 4 + 1 + 2 + MAX_FILTER_BITS // 8 + SIGNATURE_SIZE

#: Largest body of each write: a package for each of MAX_POOL_DRIVES drives (EKT ~2.4 MB,
#: OKT ~23 MB). Any other request is at most MAX_DATAGRAM octets (see body_cap).
#: A sealed body is the plaintext and the 16-octet GCM tag.
MANAGEMENT_BODY_CAPS: dict[MessageType, int] = {
    MessageType.WRITE_EKT: Timestamp.sizeof() + 4 + MAX_POOL_DRIVES * _EKT_ENTRY_MAX + _ANNOUNCEMENT_MAX + TAG_SIZE,
    MessageType.WRITE_OKT: _TEXT_MAX + Timestamp.sizeof() + 4 + MAX_POOL_DRIVES * _OKT_ENTRY_MAX + _ANNOUNCEMENT_MAX
    + TAG_SIZE,
}


def body_cap(message_type: MessageType) -> int:
    """The largest body a stream listener reads for ``message_type``."""
    return MANAGEMENT_BODY_CAPS.get(message_type, MAX_DATAGRAM)
