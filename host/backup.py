"""Files to tape and back, as a backup application does it over SCSI.

Each tape file is one header block (JSON: name, size, SHA-256, block size), the file's
data in variable-length blocks, and a filemark. Knowing the block count from the header,
restores pipeline their reads and never read past the filemark. The format is the one
t10k host wrote before it spoke iSCSI (protocol version 1), so tapes written then read back now.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import BackupError, EndOfData
from .limits import DEFAULT_BLOCK_SIZE, MAX_TRANSFER
from .tape import TapeDrive

HEADER_MAGIC = "t10k-backup"
HEADER_MAX = 64 * 1024


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
        self._finished = False

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.enabled and not self._finished and (now - self._last > 0.1 or self.done >= self.total):
            self._last = now
            frac = min(1.0, self.done / self.total)
            rate = self.done / max(now - self.started, 1e-6) / 1e6
            bar = "#" * int(30 * frac)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {frac:6.1%} {self.done / 2**20:8.1f} MiB {rate:7.1f} MB/s")
            if self.done >= self.total:
                sys.stderr.write("\n")
                self._finished = True
            sys.stderr.flush()


def _chunks(path: Path, block_size: int) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(block_size):
            yield chunk


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    for chunk in _chunks(path, 1 << 20):
        h.update(chunk)
    return h.hexdigest()


async def backup(tape: TapeDrive, files: list[Path], *, block_size: int = DEFAULT_BLOCK_SIZE,
                 append: bool = False, progress: bool | None = None) -> list[TapeFile]:
    """Write each file as a tape file: from BOT (overwriting the tape) or appended at the end."""
    if not 1 <= block_size <= MAX_TRANSFER:
        raise BackupError(f"block size must be 1..{MAX_TRANSFER} octets")
    for f in files:
        if not f.is_file():
            raise BackupError(f"{f} is not a readable file")
    await tape.ready()
    await tape.set_block_size(0)  # variable-length blocks
    first = 0
    if append:
        first = len(await list_files(tape))  # leaves the tape at the end of data
    else:
        await tape.rewind()
    written = []
    for i, path in enumerate(files):
        entry = TapeFile(first + i, path.name, path.stat().st_size, sha256_of(path), block_size)
        await tape.write(json.dumps({HEADER_MAGIC: 1} | entry.to_json()).encode())
        await tape.write_blocks(_chunks(path, block_size),
                                progress=Progress(entry.size, f"{path.name[:24]:<24}", enabled=progress))
        await tape.write_filemarks(1)
        written.append(entry)
    return written


async def _read_header(tape: TapeDrive, index: int) -> TapeFile | None:
    try:
        raw = await tape.read(HEADER_MAX)
    except EndOfData:
        return None
    try:
        data = json.loads(raw)
        if data.pop(HEADER_MAGIC) != 1:
            raise ValueError
        return TapeFile(index, str(data["name"]), int(data["size"]), str(data["sha256"]), int(data["block_size"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BackupError(f"tape file {index} was not written by t10k host backup") from None


async def list_files(tape: TapeDrive) -> list[TapeFile]:
    """Every tape file's header, spacing over the data (which needs the keys, as on tape)."""
    await tape.ready()
    await tape.rewind()
    files: list[TapeFile] = []
    while (entry := await _read_header(tape, len(files))) is not None:
        await tape.space_filemarks(1)
        files.append(entry)
    return files


async def _seek_file(tape: TapeDrive, index: int) -> TapeFile:
    await tape.rewind()
    if index:
        try:
            await tape.space_filemarks(index)
        except EndOfData:
            raise BackupError(f"the tape has fewer than {index + 1} files") from None
    entry = await _read_header(tape, index)
    if entry is None:
        raise BackupError(f"the tape has no file {index}")
    return entry


async def restore(tape: TapeDrive, index: int, out: Path, *, progress: bool | None = None) -> TapeFile:
    """Read tape file ``index`` into ``out`` (a directory gets the file's own name)."""
    await tape.ready()
    entry = await _seek_file(tape, index)
    if Path(entry.name).name != entry.name or entry.name in ("", ".", ".."):
        raise BackupError(f"tape file {index} names {entry.name!r}, which is not a plain file name")
    target = out / entry.name if out.is_dir() else out
    tmp = target.with_name(target.name + ".partial")
    h = hashlib.sha256()
    bar = Progress(entry.size, f"{entry.name[:24]:<24}", enabled=progress)
    with open(tmp, "wb") as fh:
        async for block in tape.read_blocks(entry.data_blocks, max_length=entry.block_size):
            fh.write(block)
            h.update(block)
            bar(len(block))
    if h.hexdigest() != entry.sha256:
        tmp.unlink()
        raise BackupError(f"tape file {index} ({entry.name}) does not match its checksum")
    tmp.replace(target)
    return entry


async def verify(tape: TapeDrive, sources: dict[str, Path] | None = None) -> list[dict[str, object]]:
    """Read every file back and check it against its header (and the source file, if given)."""
    results = []
    for entry in await list_files(tape):
        await _seek_file(tape, entry.index)
        h = hashlib.sha256()
        async for block in tape.read_blocks(entry.data_blocks, max_length=entry.block_size):
            h.update(block)
        ok = h.hexdigest() == entry.sha256
        source = (sources or {}).get(entry.name)
        if source is not None:
            ok = ok and sha256_of(source) == entry.sha256
        results.append(entry.to_json() | {"ok": ok, "compared_with": str(source) if source else None})
    return results
