"""Persisting a pool's NVRAM: a file per drive (the old way) against the host's one store.

    python bench/nvram_store.py [--drives 5000] [--runs 3] [--dir DIR]

N drives' sealed NVRAM images (drive_daemon.nvram.encode_nvram) are written at once, as a
pool rekey does, in the same run both ways, each into a fresh directory on the same disk:
- files: per drive, in a thread (asyncio.to_thread), write a temporary, fsync, rename,
  fsync the directory (what drive hosts did before drive_daemon/nvram_store.py);
- store: NvramStore.write per drive (group commits on one writer thread, WAL, synchronous=FULL).
Each write is awaited until durable. Prints min/median/max seconds of each and the ratio
(files / store) of the medians, as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drive_daemon.nvram import Nvram, encode_nvram  # noqa: E402
from drive_daemon.nvram_store import STORE_NAME, NvramStore  # noqa: E402
from protocol.manufacturing import make_drives  # noqa: E402


def write_file(state_dir: Path, csn: bytes, data: bytes) -> None:
    """The per-drive file write drive hosts used before the store (durable on return)."""
    path = state_dir / f"drive-{csn.hex()}.json"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(state_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def files(state_dir: Path, images: dict[bytes, bytes]) -> float:
    state_dir.mkdir()
    start = time.perf_counter()
    await asyncio.gather(*(asyncio.to_thread(write_file, state_dir, c, i) for c, i in images.items()))
    return time.perf_counter() - start


async def store(state_dir: Path, images: dict[bytes, bytes]) -> tuple[float, int]:
    nvram = NvramStore(state_dir / STORE_NAME)
    try:
        start = time.perf_counter()
        await asyncio.gather(*(nvram.write(c, i) for c, i in images.items()))
        return time.perf_counter() - start, nvram.stats.commits
    finally:
        nvram.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory under /var/tmp)")
    args = parser.parse_args()
    made = make_drives(args.drives, first_serial=0x5A00_0000_0000_0001)
    images = {m.csn: encode_nvram(m.csn, m.pckey, Nvram(os.urandom(32), os.urandom(8), 1, 2, False, os.urandom(32)))
              for m in made}
    root = Path(tempfile.mkdtemp(prefix="nvram-bench-", dir=args.dir or "/var/tmp"))
    by_files, by_store, commits = [], [], []
    try:
        for run in range(args.runs):
            by_files.append(asyncio.run(files(root / f"files-{run}", images)))
            seconds, n = asyncio.run(store(root / f"store-{run}", images))
            by_store.append(seconds)
            commits.append(n)
    finally:
        shutil.rmtree(root)
    summary = {"drives": args.drives, "image_octets": len(next(iter(images.values()))),
               "files_s": [round(min(by_files), 3), round(statistics.median(by_files), 3), round(max(by_files), 3)],
               "store_s": [round(min(by_store), 3), round(statistics.median(by_store), 3), round(max(by_store), 3)],
               "store_commits": commits,
               "files_over_store": round(statistics.median(by_files) / statistics.median(by_store), 1)}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
