"""The drive's non-volatile memory: device key (wrapped), its ID and timestamps, and the
KMS public key that came with the device key.

Media keys are never here: they live in volatile memory only. The device key and the
KMS public key are sealed together under a key derived from the drive's PCkey and bound
to the CSN and key ID; both go at a reset.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocol import envelope
from protocol.constants import DEVICE_KEY_SIZE, KMS_PUBLIC_KEY_SIZE
from protocol.errors import UnwrapError
from protocol.ids import ZERO_KEY_ID

from .errors import NvramError

NVRAM_FORMAT = 2
#: Format 1 (protocol version 2) sealed the device key alone: read, the drive holds no KMS
#: public key until its next device-key package, and treats offers as hints until then.
_READABLE_FORMATS = (1, 2)


@dataclass
class Nvram:
    device_key: bytes | None = None
    device_key_id: bytes = ZERO_KEY_ID
    device_key_timestamp: int = 0
    okt_timestamp: int = 0
    reset: bool = False
    #: The KMS's Ed25519 public key: announcements that do not verify under it are dropped.
    kms_public_key: bytes | None = None

    def to_json(self, csn: bytes, pckey: bytes) -> dict[str, Any]:
        sealed = None
        if self.device_key is not None:
            plain = self.device_key + (self.kms_public_key or b"")
            sealed = envelope.seal(envelope.nvram_key(pckey), plain, csn + self.device_key_id).hex()
        return {
            "format": NVRAM_FORMAT,
            "csn": csn.hex(),
            "device_key_sealed": sealed,
            "device_key_id": self.device_key_id.hex(),
            "device_key_timestamp": self.device_key_timestamp,
            "okt_timestamp": self.okt_timestamp,
            "reset": self.reset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], csn: bytes, pckey: bytes) -> Nvram:
        if data.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"format {data.get('format')!r}, this build reads {_READABLE_FORMATS}")
        if bytes.fromhex(data["csn"]) != csn:
            raise ValueError(f"it belongs to CSN {data['csn']}, not {csn.hex()}")
        key_id = bytes.fromhex(data["device_key_id"])
        device_key = kms_public_key = None
        if data["device_key_sealed"] is not None:
            plain = envelope.unseal(
                envelope.nvram_key(pckey), bytes.fromhex(data["device_key_sealed"]), csn + key_id, "device key"
            )
            if len(plain) not in (DEVICE_KEY_SIZE, DEVICE_KEY_SIZE + KMS_PUBLIC_KEY_SIZE):
                raise ValueError(f"the sealed device key holds {len(plain)} octets")
            device_key, kms_public_key = plain[:DEVICE_KEY_SIZE], plain[DEVICE_KEY_SIZE:] or None
        return cls(device_key, key_id, int(data["device_key_timestamp"]), int(data["okt_timestamp"]),
                   bool(data["reset"]), kms_public_key)


def nvram_path(state_dir: Path, csn: bytes) -> Path:
    return state_dir / f"drive-{csn.hex()}.json"


def temporary_path(state_dir: Path, csn: bytes) -> Path:
    """Where a new NVRAM image is written before it is renamed over the old one."""
    return nvram_path(state_dir, csn).with_suffix(".tmp")


def remove_stale_temporary(state_dir: Path, csn: bytes) -> bool:
    """At start: remove the temporary image a kill left in mid-write (it was never acknowledged:
    the rename is what makes an image count). Only this drive's: another process may host others."""
    try:
        temporary_path(state_dir, csn).unlink()
    except FileNotFoundError:
        return False
    return True


def load_nvram(state_dir: Path, csn: bytes, pckey: bytes) -> Nvram:
    path = nvram_path(state_dir, csn)
    if not path.exists():
        return Nvram()
    try:
        return Nvram.from_json(json.loads(path.read_text()), csn, pckey)
    except (ValueError, KeyError, TypeError, UnwrapError) as exc:
        raise NvramError(
            f"drive NVRAM {path} cannot be used ({exc}); move it aside to start the drive as from "
            f"the factory (it will need an EKT with 'use PCkey')"
        ) from None


def encode_nvram(csn: bytes, pckey: bytes, nvram: Nvram) -> bytes:
    return json.dumps(nvram.to_json(csn, pckey)).encode()


def save_nvram(state_dir: Path, csn: bytes, pckey: bytes, nvram: Nvram) -> None:
    write_nvram(state_dir, csn, encode_nvram(csn, pckey, nvram))


def write_nvram(state_dir: Path, csn: bytes, data: bytes) -> None:
    """Write, fsync, rename, fsync the directory: a crash leaves the old NVRAM or the new one,
    and once this returns the new one survives a crash (the drive may then acknowledge)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = nvram_path(state_dir, csn)
    tmp = temporary_path(state_dir, csn)
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)  # the rename itself is durable
    finally:
        os.close(fd)
