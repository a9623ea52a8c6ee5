"""The drive host's one NVRAM store: durable before it answers, group-committed, and whole
after a kill -9 at any moment."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from drive_daemon.errors import NvramError
from drive_daemon.nvram_store import MAX_BATCH, NvramStore


def _csn(i: int) -> bytes:
    return (0x5700_0000_0000_0000 + i).to_bytes(8, "big")


def test_images_survive_reopening(tmp_path: Path) -> None:
    store = NvramStore(tmp_path / "nvram.sqlite3")

    async def go() -> None:
        for i in range(3):
            await store.write(_csn(i), f"image {i} v1".encode())
        await store.write(_csn(1), b"image 1 v2")

    asyncio.run(go())
    store.close()
    again = NvramStore(tmp_path / "nvram.sqlite3")
    assert again.load_all() == {_csn(0): b"image 0 v1", _csn(1): b"image 1 v2", _csn(2): b"image 2 v1"}
    again.close()


def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    """A pool rekey: every drive's write at once costs a few transactions, not one each."""
    store = NvramStore(tmp_path / "nvram.sqlite3")
    n = MAX_BATCH + 500

    async def go() -> None:
        await asyncio.gather(*(store.write(_csn(i), b"x" * 200) for i in range(n)))

    asyncio.run(go())
    assert store.stats.rows == n
    assert 2 <= store.stats.commits <= 4  # MAX_BATCH rows per commit at most
    assert store.stats.largest_batch == MAX_BATCH
    assert len(store.load_all()) == n
    store.close()


def test_a_failed_commit_fails_its_writers_and_the_store_goes_on(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = NvramStore(tmp_path / "nvram.sqlite3")
    real = store._commit
    calls = {"n": 0}

    def flaky(rows: dict[bytes, bytes]) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("disk I/O error")
        real(rows)

    monkeypatch.setattr(store, "_commit", flaky)

    async def go() -> None:
        with pytest.raises(OSError, match="disk I/O error"):
            await store.write(_csn(1), b"lost")
        await store.write(_csn(2), b"kept")

    asyncio.run(go())
    assert store.load_all() == {_csn(2): b"kept"}
    assert store.stats.failures == 1
    store.close()


def test_a_damaged_store_is_named_with_the_way_out(tmp_path: Path) -> None:
    path = tmp_path / "nvram.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(NvramError, match="move it aside"):
        NvramStore(path)


def test_a_truncated_store_is_refused_not_taken_for_a_new_one(tmp_path: Path) -> None:
    """SQLite opens an empty file as a new database; a store is never empty, so that is damage."""
    path = tmp_path / "nvram.sqlite3"
    store = NvramStore(path)  # made whole under another name, then linked into place
    assert path.stat().st_size > 0 and sorted(p.name for p in tmp_path.iterdir())[0] == "nvram.sqlite3"
    store.close()
    path.write_bytes(b"")
    with pytest.raises(NvramError, match=f"{path} cannot be opened \\(it is empty.*move it aside"):
        NvramStore(path)


def test_a_temporary_left_by_a_killed_maker_is_removed_and_a_living_makers_is_kept(tmp_path: Path) -> None:
    """A kill while the store was being made leaves nvram.sqlite3.new-PID (and SQLite's files
    beside it); the next host removes them once that process is gone, never another host's."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    living = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        left = [tmp_path / f"nvram.sqlite3.new-{gone.pid}{tail}" for tail in ("", "-wal", "-shm")]
        kept = tmp_path / f"nvram.sqlite3.new-{living.pid}"
        for path in (*left, kept):
            path.write_bytes(b"half a store")
        NvramStore(tmp_path / "nvram.sqlite3").close()
        assert not any(p.exists() for p in left) and kept.read_bytes() == b"half a store"
    finally:
        living.kill()
        living.wait()


_WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from drive_daemon.nvram_store import NvramStore

    store = NvramStore(Path(sys.argv[1]))

    async def one(i: int, version: int) -> None:
        csn = (0x5700_0000_0000_0000 + i).to_bytes(8, "big")
        await store.write(csn, version.to_bytes(8, "big") * 20)
        print(f"{i} {version}", flush=True)  # acknowledged: it must survive

    async def main() -> None:
        for version in range(1, 1_000_000):
            await asyncio.gather(*(one(i, version) for i in range(64)))

    asyncio.run(main())
""")


def test_kill_9_loses_no_acknowledged_image(tmp_path: Path) -> None:
    path = tmp_path / "nvram.sqlite3"
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2], env=os.environ | {"PYTHONPATH": "."})
    acked: dict[int, int] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while len(acked) < 64 or min(acked.values()) < 3:
        line = proc.stdout.readline()
        assert line and time.monotonic() < deadline, "the writer stopped before it was killed"
        i, version = map(int, line.split())
        acked[i] = max(acked.get(i, 0), version)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = NvramStore(path)
    stored = {int.from_bytes(c, "big") - 0x5700_0000_0000_0000: int.from_bytes(v[:8], "big")
              for c, v in store.load_all().items()}
    store.close()
    for i, version in acked.items():
        assert stored[i] >= version, f"drive {i}: acknowledged version {version}, stored {stored.get(i)}"


_HOST = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from drive_daemon.nvram_store import NvramStore

    first, rounds = int(sys.argv[2]), int(sys.argv[3])
    store = NvramStore(Path(sys.argv[1]))  # both processes open (and make) it at once

    async def main() -> None:
        for version in range(1, rounds + 1):
            await asyncio.gather(*(store.write((0x5700_0000_0000_0000 + first + i).to_bytes(8, "big"),
                                               version.to_bytes(8, "big") * 20) for i in range(100)))

    asyncio.run(main())
    print(store.stats.commits, store.stats.failures, flush=True)
    store.close()
""")


def test_two_host_processes_share_one_store(tmp_path: Path) -> None:
    """Several drive hosts may share a state directory: their commits wait for each other."""
    path, rounds = tmp_path / "nvram.sqlite3", 40
    procs = [subprocess.Popen([sys.executable, "-c", _HOST, str(path), str(first), str(rounds)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
                              env=os.environ | {"PYTHONPATH": "."}) for first in (0, 1000)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for out, _ in outs:
        commits, failures = map(int, out.split())
        assert commits >= rounds and failures == 0
    store = NvramStore(path)
    rows = store.load_all()
    store.close()
    assert len(rows) == 200 and {int.from_bytes(v[:8], "big") for v in rows.values()} == {rounds}
