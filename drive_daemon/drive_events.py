"""What a Drive reports happened: the events its shell counts, logs and publishes."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.constants import KeyKind, MessageType, TokenMode


@dataclass(frozen=True)
class PullScheduled:
    kind: KeyKind
    timestamp: int
    due: float


@dataclass(frozen=True)
class OfferRefused:
    """An offer older than what the drive holds: refused silently, as the seed says."""

    kind: KeyKind
    offered: int
    held: int


@dataclass(frozen=True)
class DeviceKeysAccepted:
    device_key_id: bytes
    timestamp: int
    holding: bool


@dataclass(frozen=True)
class MediaKeysAccepted:
    okt_timestamp: int
    key_count: int
    held_until_unload: bool


@dataclass(frozen=True)
class DecryptionFailed:
    kind: KeyKind
    timestamp: int
    why: str


@dataclass(frozen=True)
class PullGaveUp:
    kind: KeyKind
    timestamp: int


@dataclass(frozen=True)
class KeysCleared:
    by: str


@dataclass(frozen=True)
class ClearRefused:
    why: str


@dataclass(frozen=True)
class MissingKeyReported:
    key_id: bytes
    token: str


@dataclass(frozen=True)
class Ignored:
    message_type: MessageType
    why: str


@dataclass(frozen=True)
class AnnouncementRejected:
    """A KEYS_AVAILABLE whose signature does not verify under the KMS public key: dropped, counted."""

    mode: TokenMode
    timestamp: int
    token: str


@dataclass(frozen=True)
class PackageDropped:
    """An unsolicited package that did not decrypt or was not newer: dropped, no error report."""

    kind: KeyKind
    timestamp: int
    why: str


Event = (
    PullScheduled | OfferRefused | DeviceKeysAccepted | MediaKeysAccepted | DecryptionFailed | PullGaveUp
    | KeysCleared | ClearRefused | MissingKeyReported | Ignored | AnnouncementRejected | PackageDropped
)
