"""Files to tape and back, as a backup application does it through the host interface.

Each tape file is one header block (JSON: name, size, SHA-256, block size), the file's
data in blocks, and a filemark. Knowing the block count from the header, restores can
pipeline reads without ever reading past the filemark.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from protocol.constants import MAX_BLOCK_SIZE, SpaceUnit
from protocol.sense import Condition

from .errors import DriveDaemonError
from .host_client import CheckCondition, HostClient

HEADER_MAGIC = "t10k-backup"
DEFAULT_BLOCK_SIZE = 256 * 1024


class BackupError(DriveDaemonError):
    """A backup, list, restore or verify that cannot be done; the message says why."""


@dataclass(frozen=True)
class TapeFile:
    index: int
    name: str
    size: int
    sha256: str
    block_size: int

    @property
    def data_blocks(self) -> int:
        return -(-self.size // self.block_size)

    def to_json(self) -> dict[str, object]:
        return {"file": self.index, "name": self.name, "size": self.size, "sha256": self.sha256,
                "block_size": self.block_size}


class Progress:
    """A one-line progress bar on stderr (only when it is a terminal, unless forced)."""

    def __init__(self, total: int, label: str, *, enabled: bool | None = None) -> None:
        self.total, self.label, self.done = max(total, 1), label, 0
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.started = time.monotonic()
        self._last = 0.0

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(1.0, self.done / self.total)
            rate = self.done / max(now - self.started, 1e-6) / 1e6
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {self.done / 2**20:8.1f} MiB {rate:7.1f} MB/s")
            if self.done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _chunks(path: Path, block_size: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(block_size):
            yield chunk


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    for chunk in _chunks(path, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


async def backup(client: HostClient, files: list[Path], *, block_size: int = DEFAULT_BLOCK_SIZE,
                 append: bool = False, progress: bool | None = None) -> list[TapeFile]:
    """Write each file as a tape file: from BOT (overwriting the tape) or appended at the end."""
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise BackupError(f"block size must be 1..{MAX_BLOCK_SIZE} octets")
    for f in files:
        if not f.is_file():
            raise BackupError(f"{f} is not a readable file")
    first = 0
    if append:
        first = len(await list_files(client))  # leaves the tape at the end of data
    else:
        await client.rewind()
    written = []
    for i, path in enumerate(files):
        entry = TapeFile(first + i, path.name, path.stat().st_size, _sha256(path), block_size)
        header = json.dumps({HEADER_MAGIC: 1} | entry.to_json()).encode()
        await client.write(header)
        await client.write_blocks(_chunks(path, block_size),
                                  progress=Progress(entry.size, f"{path.name[:24]:<24}", enabled=progress))
        await client.write_filemarks(1)
        written.append(entry)
    return written


async def _read_header(client: HostClient, index: int) -> TapeFile | None:
    try:
        raw = await client.read()
    except CheckCondition as cc:
        if cc.is_condition(Condition.END_OF_DATA):
            return None
        raise
    try:
        data = json.loads(raw)
        if data.pop(HEADER_MAGIC) != 1:
            raise ValueError
        return TapeFile(index, str(data["name"]), int(data["size"]), str(data["sha256"]), int(data["block_size"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackupError(f"tape file {index} was not written by t10k host backup") from None


async def list_files(client: HostClient) -> list[TapeFile]:
    """Every tape file's header, spacing over the data (which needs the keys, as on tape)."""
    await client.rewind()
    files: list[TapeFile] = []
    while (entry := await _read_header(client, len(files))) is not None:
        await client.space(SpaceUnit.FILEMARKS, 1)
        files.append(entry)
    return files


async def restore(client: HostClient, index: int, out: Path, *, progress: bool | None = None) -> TapeFile:
    """Read tape file ``index`` into ``out`` (a directory gets the file's own name)."""
    await client.rewind()
    if index:
        try:
            await client.space(SpaceUnit.FILEMARKS, index)
        except CheckCondition as cc:
            if cc.is_condition(Condition.END_OF_DATA):
                raise BackupError(f"the tape has fewer than {index + 1} files") from None
            raise
    entry = await _read_header(client, index)
    if entry is None:
        raise BackupError(f"the tape has no file {index}")
    target = out / entry.name if out.is_dir() else out
    tmp = target.with_name(target.name + ".partial")
    h = hashlib.sha256()
    bar = Progress(entry.size, f"{entry.name[:24]:<24}", enabled=progress)
    with open(tmp, "wb") as fh:
        async for block in client.read_blocks(entry.data_blocks, max_length=entry.block_size):
            fh.write(block)
            h.update(block)
            bar(len(block))
    if h.hexdigest() != entry.sha256:
        tmp.unlink()
        raise BackupError(f"tape file {index} ({entry.name}) does not match its checksum")
    tmp.replace(target)
    return entry


async def verify(client: HostClient, sources: dict[str, Path] | None = None) -> list[dict[str, object]]:
    """Read every file back and check it against its header (and the source file, if given)."""
    results = []
    for entry in await list_files(client):
        await client.rewind()
        if entry.index:
            await client.space(SpaceUnit.FILEMARKS, entry.index)
        await client.read()  # the header
        h = hashlib.sha256()
        async for block in client.read_blocks(entry.data_blocks, max_length=entry.block_size):
            h.update(block)
        ok = h.hexdigest() == entry.sha256
        source = (sources or {}).get(entry.name)
        if source is not None:
            ok = ok and _sha256(source) == entry.sha256
        results.append(entry.to_json() | {"ok": ok, "compared_with": str(source) if source else None})
    return results


