"""The token's non-volatile memory: what survives pulling the token out of the bay.

Only wrapped keys are stored: the package bodies the KMS built, receipt hashes and
clear authorisations. The image is written to a temporary file, fsynced and
renamed, so a crash leaves the old image or the new one, never half of one.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import ClearAuthorization, TokenError
from protocol.constants import ErrorCode, TokenMode

from .errors import MemoryImageError

IMAGE_FORMAT = 1
IMAGE_NAME = "token.json"


@dataclass
class HeldPackage:
    """One drive's slot: its encoded package (None once an EKT delivered and erased it)."""

    csn: bytes
    package_body: bytes | None
    receipt_hash: bytes
    clear_authorizations: tuple[ClearAuthorization, ...]
    acknowledged_at: int = 0


@dataclass
class TokenMemory:
    token_id: bytes
    mode: TokenMode = TokenMode.EMPTY
    timestamp: int = 0
    pool: str = ""
    packages: dict[bytes, HeldPackage] = field(default_factory=dict)
    errors: list[TokenError] = field(default_factory=list)
    mgmt_counter: int = 0

    @classmethod
    def blank(cls) -> TokenMemory:
        return cls(token_id=os.urandom(8))

    def wipe(self) -> None:
        """Reset held while inserting: keys, CSNs and errors gone; identity kept."""
        self.mode, self.timestamp, self.pool = TokenMode.EMPTY, 0, ""
        self.packages.clear()
        self.errors.clear()

    # --- serialisation ----------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": IMAGE_FORMAT,
            "token_id": self.token_id.hex(),
            "mode": self.mode.name,
            "timestamp": self.timestamp,
            "pool": self.pool,
            "mgmt_counter": self.mgmt_counter,
            "packages": [
                {
                    "csn": p.csn.hex(),
                    "package": None if p.package_body is None else base64.b64encode(p.package_body).decode(),
                    "receipt_hash": p.receipt_hash.hex(),
                    "clear": [[a.device_key_id.hex(), a.mac.hex()] for a in p.clear_authorizations],
                    "acknowledged_at": p.acknowledged_at,
                }
                for p in self.packages.values()
            ],
            "errors": [
                {"csn": e.csn.hex(), "code": int(e.error_code), "key_id": e.key_id.hex(), "at": e.reported_at}
                for e in self.errors
            ],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TokenMemory:
        if data.get("format") != IMAGE_FORMAT:
            raise ValueError(f"image format {data.get('format')!r}, this build reads {IMAGE_FORMAT}")
        packages = {}
        for p in data["packages"]:
            csn = bytes.fromhex(p["csn"])
            clear = tuple(
                ClearAuthorization(csn, bytes.fromhex(k), bytes.fromhex(mac)) for k, mac in p["clear"]
            )
            body = None if p["package"] is None else base64.b64decode(p["package"], validate=True)
            packages[csn] = HeldPackage(csn, body, bytes.fromhex(p["receipt_hash"]), clear, int(p["acknowledged_at"]))
        errors = [
            TokenError(bytes.fromhex(e["csn"]), ErrorCode(e["code"]), bytes.fromhex(e["key_id"]), int(e["at"]))
            for e in data["errors"]
        ]
        return cls(
            token_id=bytes.fromhex(data["token_id"]),
            mode=TokenMode[data["mode"]],
            timestamp=int(data["timestamp"]),
            pool=str(data["pool"]),
            packages=packages,
            errors=errors,
            mgmt_counter=int(data["mgmt_counter"]),
        )


def load_memory(state_dir: Path) -> TokenMemory:
    """The image in ``state_dir``, or a blank token if there is none yet."""
    path = state_dir / IMAGE_NAME
    if not path.exists():
        return TokenMemory.blank()
    try:
        return TokenMemory.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError) as exc:
        raise MemoryImageError(
            f"token memory image {path} is corrupt ({exc}); move it aside to start the token "
            f"blank, then write it again from the KMS"
        ) from None


def encode_memory(memory: TokenMemory) -> bytes:
    return json.dumps(memory.to_json(), separators=(",", ":")).encode()


def save_memory(state_dir: Path, memory: TokenMemory) -> None:
    write_image(state_dir, encode_memory(memory))


def write_image(state_dir: Path, data: bytes) -> None:
    """Write then rename: a crash leaves the old image or the new one."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / IMAGE_NAME
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
