"""Shared test vectors: one deterministic value per message type, and its encoding.

``messages.json`` pins the wire format: regenerate it only on purpose, with
``python -m tests.vectors`` and a protocol version bump or a PROTOCOL.md note.
"""

from __future__ import annotations

import json
from pathlib import Path

import protocol as p
from protocol.constants import (
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

VECTORS_FILE = Path(__file__).with_name("messages.json")
CSN = bytes.fromhex("5700000000000001")
KEY_ID = bytes.fromhex("0000000100000007")
DK_ID = bytes.fromhex("0000000100000002")
TOKEN_ID = bytes.fromhex("746f6b656e2d4131")
TS = 1_795_000_000_123_456


def _b(n: int, fill: int) -> bytes:
    return bytes([fill]) * n


def sample_messages() -> dict[MessageType, p.Message]:
    receipt = p.WrappedReceipt(_b(12, 0x11), _b(32, 0x22))
    media = p.MediaKeyPackage(CSN, TS, DK_ID, KEY_ID, receipt, (
        p.WrappedMediaKey(KEY_ID, _b(12, 0x33), _b(48, 0x44)),
        p.WrappedMediaKey(bytes.fromhex("0000000100000008"), _b(12, 0x55), _b(48, 0x66)),
    ))
    device = p.DeviceKeyPackage(CSN, TS, DK_ID, Wrapping.PCKEY, bytes(8), _b(12, 0x77), _b(96, 0x88))
    clear = p.ClearAuthorization(CSN, DK_ID, _b(16, 0x99))
    announced = p.Announcement(1, p.CsnFilter.of([CSN]), _b(64, 0xDD))
    values: list[p.Message] = [
        p.KeysAvailable(TOKEN_ID, TokenMode.OKT, TS, 1, p.CsnFilter.of([CSN]), _b(64, 0xDD)),
        p.KeyRequest(CSN, KeyKind.MEDIA, TS - 1),
        device,
        media,
        p.NoPackage(CSN, KeyKind.DEVICE, NoPackageReason.DELIVERED),
        p.KeyAck(CSN, KeyKind.MEDIA, TS, _b(16, 0xAA)),
        p.ErrorReport(CSN, ErrorCode.MISSING_KEY, KEY_ID, TS, _b(16, 0xAB)),
        p.ClearKeys(TOKEN_ID, 0, 1, (clear,)),
        p.WriteEkt(TS, (p.EktEntry(device, _b(32, 0xBB), _b(32, 0xDD), (clear,)),), announced),
        p.WriteOkt("pool-1", TS, (p.OktEntry(media, _b(32, 0xCC), _b(32, 0xDE), (clear,)),), announced),
        p.ReadStatus(),
        p.ClearError(),
        p.Resync(_b(16, 0xD1)),
        p.MgmtResult(MgmtStatus.OK, "OKT written"),
        p.TokenStatus(TOKEN_ID, TokenMode.OKT, TokenLed.SOLID_GREEN, TokenLed.FLASHING_RED, TS, "pool-1", 8, 8, 7,
                      (p.TokenError(CSN, ErrorCode.MISSING_KEY, KEY_ID, TS),), TS + 1),
        p.MgmtChallenge(_b(16, 0xD2)),
        p.VopStatusRequest(),
        p.VopStatus(CSN, True, EncryptionLed.RED, True, False, False, False, TS, TS - 5, 2, KEY_ID),
        p.VopResetDrive(_b(16, 0xC1), _b(16, 0xC2)),
        p.VopResult(VopStatusCode.OK, "drive reset"),
        p.VopLoad("VOL001"),
        p.VopUnload(),
        p.VopChallengeRequest(),
        p.VopChallenge(CSN, _b(16, 0xC1)),
    ]
    return {v.TYPE: v for v in values}


def sample_frames() -> dict[MessageType, bytes]:
    """Each sample framed with a fixed sequence (7): the bytes the scapy layers must match too."""
    return {t: p.encode(m, sequence=7) for t, m in sample_messages().items()}


def load_pinned() -> dict[str, str]:
    return json.loads(VECTORS_FILE.read_text())  # type: ignore[no-any-return]


def write_pinned() -> None:
    VECTORS_FILE.write_text(json.dumps({t.name: f.hex() for t, f in sample_frames().items()}, indent=1) + "\n")
