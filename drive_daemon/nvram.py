"""The drive's non-volatile memory: device key (wrapped), its ID and timestamps, and the
KMS public key that came with the device key.

Media keys are never here: they live in volatile memory only. The device key and the
KMS public key are sealed together under a key derived from the drive's PCkey and bound
to the CSN and key ID; both go at a reset. A drive host keeps every drive's image as a row
of one store (drive_daemon/nvram_store.py); older hosts kept a file per drive, which a host
imports at start (drive_daemon/persist.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import envelope
from protocol.constants import DEVICE_KEY_SIZE, KMS_PUBLIC_KEY_SIZE
from protocol.errors import UnwrapError
from protocol.ids import ZERO_KEY_ID

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
    #: The last sealed device key and what it seals: a pool rekey changes only okt_timestamp,
    #: and 10,000 drives need not derive, seal and draw a nonce again each (issue 11).
    _sealed: tuple[tuple[object, ...], str] | None = field(default=None, repr=False, compare=False)
    #: The last image's octets around okt_timestamp, and every other field they hold.
    _image: tuple[tuple[object, ...], bytes, bytes] | None = field(default=None, repr=False, compare=False)

    def to_json(self, csn: bytes, pckey: bytes) -> dict[str, Any]:
        sealed = None
        if self.device_key is not None:
            what = (csn, pckey, self.device_key_id, self.device_key, self.kms_public_key)
            if self._sealed is not None and self._sealed[0] == what:
                sealed = self._sealed[1]
            else:
                plain = self.device_key + (self.kms_public_key or b"")
                sealed = envelope.seal(envelope.nvram_key(pckey), plain, csn + self.device_key_id).hex()
                self._sealed = (what, sealed)
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
        nvram = cls(device_key, key_id, int(data["device_key_timestamp"]), int(data["okt_timestamp"]),
                    bool(data["reset"]), kms_public_key)
        if device_key is not None:
            nvram._sealed = ((csn, pckey, key_id, device_key, kms_public_key), data["device_key_sealed"])
        return nvram


def encode_nvram(csn: bytes, pckey: bytes, nvram: Nvram) -> bytes:
    """The image a drive host stores (drive_daemon/nvram_store.py): the device key stays sealed.

    A pool rekey changes only okt_timestamp: the rest of the JSON is kept from the last image
    (the octets are json.dumps' all the same)."""
    data = nvram.to_json(csn, pckey)
    okt_timestamp, data["okt_timestamp"] = data["okt_timestamp"], None
    rest = tuple(data.values())
    cached = nvram._image
    if cached is None or cached[0] != rest:
        head, _, tail = json.dumps(data).encode().partition(b'"okt_timestamp": null')
        cached = nvram._image = (rest, head + b'"okt_timestamp": ', tail)
    return b"%s%d%s" % (cached[1], okt_timestamp, cached[2])


def decode_nvram(image: bytes, csn: bytes, pckey: bytes) -> Nvram:
    """Raises ValueError, KeyError, TypeError or UnwrapError if the image cannot be used."""
    data = json.loads(image)
    if not isinstance(data, dict):
        raise ValueError("it is not a JSON object")
    return Nvram.from_json(data, csn, pckey)


#: Errors of :func:`decode_nvram` on a damaged or foreign image.
DECODE_ERRORS = (ValueError, KeyError, TypeError, UnwrapError)


# --- the old layout: one file per drive (read once, imported into the host's store) ------

def legacy_path(state_dir: Path, csn: bytes) -> Path:
    """Where hosts before the store kept a drive's NVRAM (same image as encode_nvram's)."""
    return state_dir / f"drive-{csn.hex()}.json"


def temporary_path(state_dir: Path, csn: bytes) -> Path:
    """Where those hosts wrote a new image before renaming it over the old one."""
    return legacy_path(state_dir, csn).with_suffix(".tmp")


def remove_stale_temporary(state_dir: Path, csn: bytes) -> bool:
    """At start: remove the temporary image a kill left in mid-write (it was never acknowledged:
    the rename is what made an image count). Only this drive's: another process may host others."""
    try:
        temporary_path(state_dir, csn).unlink()
    except FileNotFoundError:
        return False
    return True
