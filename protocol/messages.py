"""The message catalogue as frozen dataclasses: what every caller gives and gets.

Byte layouts live in :mod:`protocol.layouts`; these classes check their own
invariants so that a message that exists is a message that can be encoded.
"""

from __future__ import annotations

from dataclasses import InitVar, dataclass
from typing import ClassVar, Union

from .constants import (
    CHALLENGE_SIZE,
    CLEAR_MAC_SIZE,
    CSN_SIZE,
    KEY_ID_SIZE,
    MAX_MEDIA_KEYS,
    NONCE_SIZE,
    RECEIPT_SIZE,
    REPORT_KEY_SIZE,
    REPORT_MAC_SIZE,
    SIGNATURE_SIZE,
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
from .csn_filter import CsnFilter

RECEIPT_HASH_SIZE = 32
TOKEN_ID_SIZE = 8
MAX_TEXT = 1024


def _size(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise ValueError(f"{what} must be {size} octets, got {len(value)}")


def _u64(value: int, what: str) -> None:
    if not 0 <= value < 2**64:
        raise ValueError(f"{what} must fit in 64 bits, got {value}")


# --- drive LAN ---------------------------------------------------------------


@dataclass(frozen=True)
class Announcement:
    """What the KMS signs for a token to broadcast: the CSNs a write serves, and the signature
    (Ed25519, KMS key) over a domain string, the mode, the timestamp, csn_count and the filter."""

    csn_count: int
    csn_filter: CsnFilter
    signature: bytes

    def __post_init__(self) -> None:
        _size(self.signature, SIGNATURE_SIZE, "announcement signature")
        if not 0 <= self.csn_count < 2**32:
            raise ValueError(f"csn_count must fit in 32 bits, got {self.csn_count}")


@dataclass(frozen=True)
class KeysAvailable:
    """Token to every drive (broadcast): "I hold keys; pull yours if it is for you".

    Everything but token_id (informational) is the KMS's signed announcement, verbatim."""

    TYPE: ClassVar[MessageType] = MessageType.KEYS_AVAILABLE
    token_id: bytes
    mode: TokenMode
    timestamp: int
    csn_count: int
    csn_filter: CsnFilter
    signature: bytes

    def __post_init__(self) -> None:
        _size(self.token_id, TOKEN_ID_SIZE, "token_id")
        _u64(self.timestamp, "timestamp")
        _size(self.signature, SIGNATURE_SIZE, "signature")


@dataclass(frozen=True)
class KeyRequest:
    """Drive to token (unicast): send me the package for my CSN."""

    TYPE: ClassVar[MessageType] = MessageType.KEY_REQUEST
    csn: bytes
    kind: KeyKind
    held_timestamp: int

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _u64(self.held_timestamp, "held_timestamp")


@dataclass(frozen=True)
class DeviceKeyPackage:
    """A new device key for one drive, wrapped under its PCkey or its current device key."""

    TYPE: ClassVar[MessageType] = MessageType.DEVICE_KEY_PACKAGE
    csn: bytes
    timestamp: int
    device_key_id: bytes
    wrapping: Wrapping
    wrapping_key_id: bytes
    nonce: bytes
    wrapped: bytes

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _u64(self.timestamp, "timestamp")
        _size(self.device_key_id, KEY_ID_SIZE, "device_key_id")
        _size(self.wrapping_key_id, KEY_ID_SIZE, "wrapping_key_id")
        _size(self.nonce, NONCE_SIZE, "nonce")
        _size(self.wrapped, WRAPPED_DEVICE_KEY_SIZE, "wrapped")


@dataclass(frozen=True)
class WrappedMediaKey:
    key_id: bytes
    nonce: bytes
    wrapped: bytes

    def __post_init__(self) -> None:
        _size(self.key_id, KEY_ID_SIZE, "key_id")
        _size(self.nonce, NONCE_SIZE, "nonce")
        _size(self.wrapped, WRAPPED_KEY_SIZE, "wrapped media key")


@dataclass(frozen=True)
class WrappedReceipt:
    nonce: bytes
    wrapped: bytes

    def __post_init__(self) -> None:
        _size(self.nonce, NONCE_SIZE, "receipt nonce")
        _size(self.wrapped, WRAPPED_RECEIPT_SIZE, "wrapped receipt")


@dataclass(frozen=True)
class MediaKeyPackage:
    """The media keys of one drive's pool mapping, each wrapped under its device key."""

    TYPE: ClassVar[MessageType] = MessageType.MEDIA_KEY_PACKAGE
    csn: bytes
    okt_timestamp: int
    device_key_id: bytes
    write_key_id: bytes
    receipt: WrappedReceipt
    media_keys: tuple[WrappedMediaKey, ...]

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _u64(self.okt_timestamp, "okt_timestamp")
        _size(self.device_key_id, KEY_ID_SIZE, "device_key_id")
        _size(self.write_key_id, KEY_ID_SIZE, "write_key_id")
        object.__setattr__(self, "media_keys", tuple(self.media_keys))
        if not 1 <= len(self.media_keys) <= MAX_MEDIA_KEYS:
            raise ValueError(f"a media key package holds 1..{MAX_MEDIA_KEYS} keys, got {len(self.media_keys)}")
        ids = [k.key_id for k in self.media_keys]
        if len(set(ids)) != len(ids):
            raise ValueError("a media key package lists a key ID twice")
        if self.write_key_id not in ids:
            raise ValueError("the write key must be one of the package's media keys")


@dataclass(frozen=True)
class NoPackage:
    """Token to drive: nothing for that CSN (a filter false positive, or already delivered)."""

    TYPE: ClassVar[MessageType] = MessageType.NO_PACKAGE
    csn: bytes
    kind: KeyKind
    reason: NoPackageReason

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")


@dataclass(frozen=True)
class KeyAck:
    """Drive to token: package accepted; the receipt proves the drive could unwrap it."""

    TYPE: ClassVar[MessageType] = MessageType.KEY_ACK
    csn: bytes
    kind: KeyKind
    timestamp: int
    receipt: bytes

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _u64(self.timestamp, "timestamp")
        _size(self.receipt, RECEIPT_SIZE, "receipt")


@dataclass(frozen=True)
class ErrorReport:
    """Drive to token: a missing key (with its ID) or a key message decryption error.

    ``timestamp`` is that of the token write the report is about (the OKT the drive's media
    keys came from, or the write whose package did not decrypt); ``mac`` is an HMAC under
    that write's report key for this CSN (protocol/reportauth.py)."""

    TYPE: ClassVar[MessageType] = MessageType.ERROR_REPORT
    csn: bytes
    error_code: ErrorCode
    key_id: bytes
    timestamp: int
    mac: bytes

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _size(self.key_id, KEY_ID_SIZE, "key_id")
        _u64(self.timestamp, "timestamp")
        _size(self.mac, REPORT_MAC_SIZE, "report mac")


@dataclass(frozen=True)
class ClearAuthorization:
    """A KMS-made MAC, under one device key of one drive, allowing its keys to be cleared."""

    csn: bytes
    device_key_id: bytes
    mac: bytes

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _size(self.device_key_id, KEY_ID_SIZE, "device_key_id")
        _size(self.mac, CLEAR_MAC_SIZE, "clear mac")


@dataclass(frozen=True)
class ClearKeys:
    """Token to every drive (broadcast, in parts): clear the keys of these CSNs."""

    TYPE: ClassVar[MessageType] = MessageType.CLEAR_KEYS
    token_id: bytes
    part: int
    parts: int
    authorizations: tuple[ClearAuthorization, ...]

    def __post_init__(self) -> None:
        _size(self.token_id, TOKEN_ID_SIZE, "token_id")
        object.__setattr__(self, "authorizations", tuple(self.authorizations))
        if not 0 <= self.part < self.parts:
            raise ValueError(f"part {self.part} is outside 0..{self.parts - 1}")


# --- KMS to token ------------------------------------------------------------


@dataclass(frozen=True)
class EktEntry:
    package: DeviceKeyPackage
    receipt_hash: bytes
    #: What the drive's error reports about this write are MAC'd under (reportauth.report_key).
    report_key: bytes
    clear_authorizations: tuple[ClearAuthorization, ...]

    def __post_init__(self) -> None:
        _size(self.receipt_hash, RECEIPT_HASH_SIZE, "receipt_hash")
        _size(self.report_key, REPORT_KEY_SIZE, "report_key")
        object.__setattr__(self, "clear_authorizations", tuple(self.clear_authorizations))
        if any(a.csn != self.package.csn for a in self.clear_authorizations):
            raise ValueError("a clear authorization names another CSN than its package")


@dataclass(frozen=True)
class WriteEkt:
    TYPE: ClassVar[MessageType] = MessageType.WRITE_EKT
    timestamp: int
    entries: tuple[EktEntry, ...]
    announcement: Announcement

    def __post_init__(self) -> None:
        _u64(self.timestamp, "timestamp")
        object.__setattr__(self, "entries", tuple(self.entries))
        _announces(self.announcement, len(self.entries))
        _unique_csns([e.package.csn for e in self.entries])
        if any(e.package.timestamp != self.timestamp for e in self.entries):
            raise ValueError("every device key package of an EKT carries the EKT's timestamp")


@dataclass(frozen=True)
class OktEntry:
    package: MediaKeyPackage
    receipt_hash: bytes
    #: What the drive's error reports about this write are MAC'd under (reportauth.report_key).
    report_key: bytes
    clear_authorizations: tuple[ClearAuthorization, ...]

    def __post_init__(self) -> None:
        _size(self.receipt_hash, RECEIPT_HASH_SIZE, "receipt_hash")
        _size(self.report_key, REPORT_KEY_SIZE, "report_key")
        object.__setattr__(self, "clear_authorizations", tuple(self.clear_authorizations))
        if any(a.csn != self.package.csn for a in self.clear_authorizations):
            raise ValueError("a clear authorization names another CSN than its package")


@dataclass(frozen=True)
class WriteOkt:
    TYPE: ClassVar[MessageType] = MessageType.WRITE_OKT
    pool: str
    okt_timestamp: int
    entries: tuple[OktEntry, ...]
    announcement: Announcement

    def __post_init__(self) -> None:
        _u64(self.okt_timestamp, "okt_timestamp")
        if len(self.pool) > MAX_TEXT:
            raise ValueError("pool name is too long")
        object.__setattr__(self, "entries", tuple(self.entries))
        _announces(self.announcement, len(self.entries))
        _unique_csns([e.package.csn for e in self.entries])
        if any(e.package.okt_timestamp != self.okt_timestamp for e in self.entries):
            raise ValueError("every media key package of an OKT carries the mapping's timestamp")


@dataclass(frozen=True)
class ReadStatus:
    TYPE: ClassVar[MessageType] = MessageType.READ_STATUS


@dataclass(frozen=True)
class ClearError:
    TYPE: ClassVar[MessageType] = MessageType.CLEAR_ERROR


@dataclass(frozen=True)
class Resync:
    """KMS to a token without a replay counter: the challenge it answered with; this
    request's counter becomes the token's floor."""

    TYPE: ClassVar[MessageType] = MessageType.RESYNC
    challenge: bytes

    def __post_init__(self) -> None:
        _size(self.challenge, CHALLENGE_SIZE, "challenge")


@dataclass(frozen=True)
class MgmtChallenge:
    """Token to KMS: this token has no replay counter; RESYNC with this challenge first."""

    TYPE: ClassVar[MessageType] = MessageType.MGMT_CHALLENGE
    challenge: bytes

    def __post_init__(self) -> None:
        _size(self.challenge, CHALLENGE_SIZE, "challenge")


@dataclass(frozen=True)
class MgmtResult:
    TYPE: ClassVar[MessageType] = MessageType.MGMT_RESULT
    status: MgmtStatus
    message: str

    def __post_init__(self) -> None:
        if len(self.message) > MAX_TEXT:
            object.__setattr__(self, "message", self.message[:MAX_TEXT])


@dataclass(frozen=True)
class TokenError:
    csn: bytes
    error_code: ErrorCode
    key_id: bytes
    reported_at: int

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _size(self.key_id, KEY_ID_SIZE, "key_id")


@dataclass(frozen=True)
class TokenStatus:
    TYPE: ClassVar[MessageType] = MessageType.TOKEN_STATUS
    token_id: bytes
    mode: TokenMode
    led3: TokenLed
    error_led: TokenLed
    timestamp: int
    pool: str
    csn_count: int
    packages_held: int
    acknowledged: int
    errors: tuple[TokenError, ...]
    #: The replay counter of the last WRITE_EKT/WRITE_OKT the token accepted (0: none yet):
    #: how a KMS whose write timed out learns whether THAT write was applied.
    last_write_counter: int = 0

    def __post_init__(self) -> None:
        _size(self.token_id, TOKEN_ID_SIZE, "token_id")
        object.__setattr__(self, "errors", tuple(self.errors))


# --- Virtual Operator Panel --------------------------------------------------


@dataclass(frozen=True)
class VopStatusRequest:
    TYPE: ClassVar[MessageType] = MessageType.VOP_STATUS_REQUEST


@dataclass(frozen=True)
class VopStatus:
    """The VOP "Retrieve > View Drive Data > Encrypt" screen, as data."""

    TYPE: ClassVar[MessageType] = MessageType.VOP_STATUS
    csn: bytes
    encrypting_model: bool
    led: EncryptionLed
    encryption_enabled: bool
    reset: bool
    need_okt: bool
    holding_keys: bool
    okt_timestamp: int
    device_key_timestamp: int
    media_key_count: int
    write_key_id: bytes

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _size(self.write_key_id, KEY_ID_SIZE, "write_key_id")

    @property
    def status_fields(self) -> tuple[str, str]:
        """The two VOP status fields as the seed shows them."""
        first = "==RESET==" if self.reset else ("Encryption" if self.encryption_enabled else "")
        second = "Holding Keys" if self.holding_keys else ("Need OKT" if self.need_okt else "")
        return first, second


@dataclass(frozen=True)
class VopChallengeRequest:
    """VOP to drive: the first step of Reset Drive; the answer is good on this connection only."""

    TYPE: ClassVar[MessageType] = MessageType.VOP_CHALLENGE_REQUEST


@dataclass(frozen=True)
class VopChallenge:
    """Drive to VOP: a fresh random challenge for this connection, and the CSN the reset key is for."""

    TYPE: ClassVar[MessageType] = MessageType.VOP_CHALLENGE
    csn: bytes
    challenge: bytes

    def __post_init__(self) -> None:
        _size(self.csn, CSN_SIZE, "csn")
        _size(self.challenge, VOP_CHALLENGE_SIZE, "challenge")


@dataclass(frozen=True)
class VopResetDrive:
    """VOP to drive: clear the keys; proven by an HMAC over the connection's challenge under
    the drive's reset key (HKDF of its host's service credential and its CSN)."""

    TYPE: ClassVar[MessageType] = MessageType.VOP_RESET_DRIVE
    challenge: bytes
    mac: bytes

    def __post_init__(self) -> None:
        _size(self.challenge, VOP_CHALLENGE_SIZE, "challenge")
        _size(self.mac, VOP_MAC_SIZE, "reset mac")


@dataclass(frozen=True)
class VopResult:
    TYPE: ClassVar[MessageType] = MessageType.VOP_RESULT
    status: VopStatusCode
    message: str


@dataclass(frozen=True)
class VopLoad:
    """The operator puts a cartridge of the library in the drive (until a medium changer exists)."""

    TYPE: ClassVar[MessageType] = MessageType.VOP_LOAD
    volser: str

    def __post_init__(self) -> None:
        _volser(self.volser)


@dataclass(frozen=True)
class VopUnload:
    """The operator unloads and takes out the cartridge, loaded or left in the drive by the host."""

    TYPE: ClassVar[MessageType] = MessageType.VOP_UNLOAD


def _volser(volser: str) -> None:
    if not 1 <= len(volser) <= 16 or not all(c.isalnum() or c in "-_" for c in volser):
        raise ValueError(f"a volume serial is 1-16 letters, digits, '-' or '_', got {volser!r}")


def _announces(announcement: Announcement, entry_count: int) -> None:
    if announcement.csn_count != entry_count:
        raise ValueError(f"the announcement counts {announcement.csn_count} CSNs, the write holds {entry_count}")


def _unique_csns(csns: list[bytes]) -> None:
    if len(set(csns)) != len(csns):
        raise ValueError("a CSN appears twice")


Message = Union[
    KeysAvailable,
    KeyRequest,
    DeviceKeyPackage,
    MediaKeyPackage,
    NoPackage,
    KeyAck,
    ErrorReport,
    ClearKeys,
    WriteEkt,
    WriteOkt,
    ReadStatus,
    ClearError,
    Resync,
    MgmtResult,
    TokenStatus,
    MgmtChallenge,
    VopStatusRequest,
    VopStatus,
    VopResetDrive,
    VopResult,
    VopLoad,
    VopUnload,
    VopChallengeRequest,
    VopChallenge,
]

MESSAGE_CLASSES: dict[MessageType, type] = {
    cls.TYPE: cls  # type: ignore[attr-defined]
    for cls in Message.__args__  # type: ignore[attr-defined]
}


@dataclass(frozen=True)
class SealedBody:
    """A sealed management body as anyone without the token secret sees it: its type (from
    the header) and its size, nothing else. Not a message: it has no layout."""

    sealed_octets: int
    message_type: InitVar[MessageType]

    def __post_init__(self, message_type: MessageType) -> None:
        object.__setattr__(self, "TYPE", message_type)
