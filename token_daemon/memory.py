"""The token's non-volatile memory: what survives pulling the token out of the bay.

Only wrapped keys are stored: what the KMS wrote (the encoded WRITE_EKT or WRITE_OKT
body, kept in a content-addressed file written once per write, sealed with AES-256-GCM
under a key derived from the token secret, since it holds the drives' clear
authorisations) and a small state file (identity, replay counter, which packages were
acknowledged or erased, errors) rewritten as those change. Each file is written to a
temporary name, fsynced and renamed, and the state file names the contents it goes with,
so a crash leaves the old memory or the new one, never half of one; temporary files a
kill left behind are removed at the next start. The state file carries an HMAC under a
key derived from the secret, so its replay counter cannot be edited down. The directory is
0700, its files 0600.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocol import (
    Announcement,
    ClearAuthorization,
    DecodeError,
    TokenError,
    UnwrapError,
    WriteEkt,
    WriteOkt,
    decode_body,
    encode_body,
    envelope,
)
from protocol.writes import package_octets
from protocol.constants import ErrorCode, MessageType, TokenMode

from .errors import MemoryImageError

IMAGE_FORMAT = 3
IMAGE_NAME = "token.json"
_CONTENT_TYPE = {TokenMode.EKT: MessageType.WRITE_EKT, TokenMode.OKT: MessageType.WRITE_OKT}


@dataclass
class HeldPackage:
    """One drive's slot: its encoded package (None once an EKT delivered and erased it)."""

    csn: bytes
    package_body: bytes | None
    receipt_hash: bytes
    clear_authorizations: tuple[ClearAuthorization, ...]
    acknowledged_at: int = 0
    #: The key this drive's error reports about the current write must be MAC'd with.
    report_key: bytes = b""


@dataclass
class TokenMemory:
    token_id: bytes
    mode: TokenMode = TokenMode.EMPTY
    timestamp: int = 0
    pool: str = ""
    packages: dict[bytes, HeldPackage] = field(default_factory=dict)
    #: One slot per (CSN, error code): bounded by the drives written, found in O(1).
    errors: dict[tuple[bytes, ErrorCode], TokenError] = field(default_factory=dict)
    mgmt_counter: int = 0
    #: False for a blank memory (or a state directory moved aside): no counter to check a
    #: request against, so the token asks the KMS to RESYNC first.
    counter_set: bool = True
    #: The replay counter of the last write accepted (TOKEN_STATUS reports it).
    last_write_counter: int = 0
    #: The encoded WRITE_EKT/WRITE_OKT body the packages came from.
    contents: bytes | None = None
    #: The KMS-signed announcement of that write, broadcast verbatim in KEYS_AVAILABLE.
    announcement: Announcement | None = None

    @classmethod
    def blank(cls) -> TokenMemory:
        return cls(token_id=os.urandom(8), counter_set=False)

    def load_write(self, message: WriteEkt | WriteOkt, body: bytes | None = None) -> None:
        """Replace the contents with what the KMS wrote; a write also clears errors.

        ``body``: the octets ``message`` was decoded from. They are kept as they came, and
        each package is served as the octets the KMS sealed (nothing is encoded again);
        without them (a write built in this process) the message is encoded once."""
        if isinstance(message, WriteEkt):
            self.mode, self.timestamp, self.pool = TokenMode.EKT, message.timestamp, ""
        else:
            self.mode, self.timestamp, self.pool = TokenMode.OKT, message.okt_timestamp, message.pool
        self.contents = encode_body(message) if body is None else bytes(body)
        self.announcement = message.announcement
        bodies = package_octets(message, self.contents)
        self.packages = {
            e.package.csn: HeldPackage(e.package.csn, octets, e.receipt_hash, e.clear_authorizations,
                                       report_key=e.report_key)
            for e, octets in zip(message.entries, bodies, strict=True)
        }
        self.errors.clear()

    def checkpoint(self) -> TokenMemory:
        """A copy to go back to if a management request cannot be persisted: a write replaces
        ``packages`` and the error table rather than changing them, so copying the two tables
        (not the 10,000 packages in them, as a deep copy would) keeps this memory as it is."""
        return dataclasses.replace(self, packages=dict(self.packages), errors=dict(self.errors))

    def wipe(self) -> None:
        """Reset held while inserting: keys, CSNs and errors gone; identity kept."""
        self.mode, self.timestamp, self.pool, self.contents = TokenMode.EMPTY, 0, "", None
        self.announcement = None
        self.packages.clear()
        self.errors.clear()

    @property
    def contents_name(self) -> str | None:
        if self.contents is None:
            return None
        return f"contents-{hashlib.sha256(self.contents).hexdigest()[:24]}.bin"

    # --- the small state file ---------------------------------------------

    def state_json(self, contents_name: str | None) -> dict[str, Any]:
        return {
            "format": IMAGE_FORMAT,
            "token_id": self.token_id.hex(),
            "mgmt_counter": self.mgmt_counter,
            "counter_set": self.counter_set,
            "last_write_counter": self.last_write_counter,
            "contents": contents_name,
            "acknowledged": {p.csn.hex(): p.acknowledged_at for p in self.packages.values() if p.acknowledged_at},
            "erased": [p.csn.hex() for p in self.packages.values() if p.package_body is None],
            "errors": [
                {"csn": e.csn.hex(), "code": int(e.error_code), "key_id": e.key_id.hex(), "at": e.reported_at}
                for e in self.errors.values()
            ],
        }

    @classmethod
    def from_state(cls, data: dict[str, Any], contents: bytes | None, mode: TokenMode) -> TokenMemory:
        if data.get("format") != IMAGE_FORMAT:
            raise ValueError(f"image format {data.get('format')!r}, this build reads {IMAGE_FORMAT}"
                             + (" (format 2 kept what the KMS wrote in clear)" if data.get("format") == 2 else ""))
        memory = cls(token_id=bytes.fromhex(data["token_id"]), mgmt_counter=int(data["mgmt_counter"]),
                     counter_set=bool(data["counter_set"]), last_write_counter=int(data.get("last_write_counter", 0)))
        if contents is not None:
            message = decode_body(_CONTENT_TYPE[mode], contents)
            assert isinstance(message, (WriteEkt, WriteOkt))
            memory.load_write(message, contents)
            for csn_hex, at in data["acknowledged"].items():
                memory.packages[bytes.fromhex(csn_hex)].acknowledged_at = int(at)
            for csn_hex in data["erased"]:
                memory.packages[bytes.fromhex(csn_hex)].package_body = None
        errors = (
            TokenError(bytes.fromhex(e["csn"]), ErrorCode(e["code"]), bytes.fromhex(e["key_id"]), int(e["at"]))
            for e in data["errors"]
        )
        memory.errors = {(e.csn, e.error_code): e for e in errors}
        return memory


class MemoryStore:
    """Reads and writes one token's memory in its state directory, sealed under its secret."""

    def __init__(self, state_dir: Path, secret: bytes) -> None:
        self.state_dir = state_dir
        self._key = envelope.token_memory_key(secret)
        self._secret = secret
        self._written_contents: str | None = None

    def prepare(self) -> list[str]:
        """At start, with the directory locked: make it private (0700) and remove the temporary
        files a kill left mid-write. Returns the names removed."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.state_dir, 0o700)
        removed = []
        for leftover in self.state_dir.glob("*.tmp"):
            if leftover.is_dir() and not leftover.is_symlink():
                continue  # not ours to remove
            leftover.unlink(missing_ok=True)
            removed.append(leftover.name)
        return removed

    def load(self) -> TokenMemory:
        """The memory in the state directory, or a blank token if there is none yet."""
        path = self.state_dir / IMAGE_NAME
        if not path.exists():
            return TokenMemory.blank()
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or data.get("format") != IMAGE_FORMAT:
                raise ValueError(f"image format {data.get('format') if isinstance(data, dict) else None!r}, this "
                                 f"build reads {IMAGE_FORMAT}"
                                 + (" (format 2 kept what the KMS wrote in clear)" if data.get("format") == 2 else ""))
            mac = data.pop("mac", "")
            if not hmac.compare_digest(str(mac), envelope.token_state_mac(self._secret, _canonical(data))):
                raise ValueError(f"{IMAGE_NAME} does not verify under this token's secret (edited, or another token's)")
            name = data.get("contents")
            contents, mode = None, TokenMode.EMPTY
            if name is not None:
                raw = envelope.unseal(self._key, (self.state_dir / name).read_bytes(), _contents_ad(name), name)
                if name != f"contents-{hashlib.sha256(raw[1:]).hexdigest()[:24]}.bin":
                    raise ValueError(f"{name} does not match its checksum")
                mode, contents = TokenMode(raw[0]), raw[1:]
            memory = TokenMemory.from_state(data, contents, mode)
        except UnwrapError as exc:
            raise MemoryImageError(
                f"token memory in {self.state_dir} does not open under this token's secret ({exc}): it is corrupt, "
                f"or the token was started with another secret; start it with its own, or move the directory "
                f"aside to start the token blank, then write it again from the KMS"
            ) from None
        except (OSError, ValueError, KeyError, TypeError, AssertionError, DecodeError) as exc:
            raise MemoryImageError(
                f"token memory in {self.state_dir} is corrupt ({exc}); move the directory aside to start the "
                f"token blank, then write it again from the KMS"
            ) from None
        self._written_contents = memory.contents_name
        return memory

    def snapshot(self, memory: TokenMemory) -> tuple[bytes | None, str | None, bytes]:
        """What to write, taken in the event loop: (new contents, sealed, or None, its name, state)."""
        name = memory.contents_name
        new_contents = None
        if name is not None and name != self._written_contents:
            plain = bytes([memory.mode]) + memory.contents  # type: ignore[operator]
            new_contents = envelope.seal(self._key, plain, _contents_ad(name))
        data = memory.state_json(name)
        state = json.dumps(data | {"mac": envelope.token_state_mac(self._secret, _canonical(data))},
                           separators=(",", ":")).encode()
        return new_contents, name, state

    def write(self, new_contents: bytes | None, name: str | None, state: bytes) -> None:
        """Contents first, then the state naming them, then drop the old contents."""
        # One write at a time: a write whose task was cancelled (a token stopped, then put back
        # in the bay) still runs in its thread; the next must not share its .tmp files.
        with _WRITE_LOCK:
            self._write(new_contents, name, state)

    def _write(self, new_contents: bytes | None, name: str | None, state: bytes) -> None:
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if new_contents is not None and name is not None:
            _atomic_write(self.state_dir / name, new_contents)
        _atomic_write(self.state_dir / IMAGE_NAME, state)
        self._written_contents = name
        for old in self.state_dir.glob("contents-*.bin"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def save(self, memory: TokenMemory) -> None:
        self.write(*self.snapshot(memory))


_WRITE_LOCK = threading.Lock()


def _canonical(state: dict[str, Any]) -> bytes:
    return json.dumps(state, sort_keys=True, separators=(",", ":")).encode()


def _contents_ad(name: str) -> bytes:
    """Sealed contents are bound to their name (and so to the state file naming them)."""
    return b"token contents " + name.encode()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)  # an older file of that name may have had wider rights
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
