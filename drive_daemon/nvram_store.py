"""One durable NVRAM store per drive host: every hosted drive's NVRAM in one SQLite file.

A file per drive, written, fsynced and renamed by a thread per change, cost a pool rekey
most of its time at thousands of drives. Here each drive's sealed NVRAM image (what
:func:`drive_daemon.nvram.encode_nvram` makes: the device key stays sealed under the PCkey)
is a row, and writes are group-committed: whatever drives changed while the previous
commit ran go together in one transaction, on one writer thread, in WAL mode with
``synchronous=FULL``. A write is settled only once its transaction is durable, so a
drive acknowledges only what survives a ``kill -9``; SQLite's own journal means a crash
leaves each row old or new, never half written.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import NvramError

STORE_NAME = "nvram.sqlite3"
#: Most rows one transaction takes; the rest wait for the next (a commit stays short).
MAX_BATCH = 2000
#: How long a commit waits for another process's transaction on the same store (several drive
#: hosts may share a state directory); past it the write fails like a failing disk.
BUSY_TIMEOUT_S = 30.0
_SCHEMA = "CREATE TABLE IF NOT EXISTS nvram (csn BLOB PRIMARY KEY, image BLOB NOT NULL) WITHOUT ROWID"

#: Told once a write is durable (None) or cannot be (the OSError), on the event loop's thread.
Settled = Callable[[OSError | None], None]


@dataclass
class NvramStoreStats:
    commits: int = 0
    rows: int = 0
    largest_batch: int = 0
    failures: int = 0


@dataclass
class _Pending:
    rows: dict[bytes, bytes] = field(default_factory=dict)
    #: Per CSN: every write waiting for that drive's row (a later image supersedes an earlier one).
    waiters: dict[bytes, list[Settled]] = field(default_factory=dict)


class NvramStore:
    """Load every drive's NVRAM image at start; ``await write(csn, image)`` before acknowledging.

    Several processes may open the same store (each hosting other drives): every commit is an
    immediate transaction, waiting up to BUSY_TIMEOUT_S for another process's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stats = NvramStoreStats()
        # One thread owns the connection: every statement runs there, in order.
        self._thread = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="nvram")
        self._conn: sqlite3.Connection | None = None
        self._pending = _Pending()
        self._flusher: asyncio.Task[None] | None = None
        self._closed = False
        try:
            self._thread.submit(self._open).result()
        except (sqlite3.Error, OSError) as exc:
            self._thread.shutdown(wait=False)
            raise NvramError(
                f"the drive host's NVRAM store {path} cannot be opened ({exc}); if it is damaged, move it aside "
                f"to start every drive as from the factory (each will need an EKT with 'use PCkey')"
            ) from None

    # --- the writer thread -------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_leftovers()
        if not self.path.exists():
            self._create()
        elif self.path.stat().st_size == 0:
            raise sqlite3.DatabaseError("it is empty (0 octets), as no store ever is: it was truncated")
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")  # a commit is on disk when it returns
        conn.execute(_SCHEMA)
        conn.execute("SELECT count(*) FROM nvram").fetchone()  # a damaged file fails here, not later
        self._conn = conn

    def _remove_leftovers(self) -> None:
        """A kill while a store was being made leaves its temporary (and SQLite's files beside
        it): removed once the process that made it is gone. Another host making the store in
        the same directory right now keeps its own."""
        prefix = f"{self.path.name}.new-"
        for leftover in self.path.parent.glob(f"{prefix}*"):
            pid = leftover.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not _running(int(pid)):
                leftover.unlink(missing_ok=True)

    def _create(self) -> None:
        """A new store is made whole under a temporary name, then linked into place: the store's
        path never holds a file without its table (SQLite would take an empty file for a new
        store, so a truncated one would lose every drive's NVRAM silently). Linked, not renamed:
        of two hosts making it at once, the first keeps it and the other opens that."""
        tmp = self.path.with_name(f"{self.path.name}.new-{os.getpid()}")
        tmp.unlink(missing_ok=True)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)
        finally:
            conn.close()  # checkpointed: the file holds the table
        try:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.link(tmp, self.path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        fsync_directory(self.path.parent)

    def _commit(self, rows: dict[bytes, bytes]) -> None:
        assert self._conn is not None
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR REPLACE INTO nvram (csn, image) VALUES (?, ?)", rows.items())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # a failed COMMIT may have rolled back already
                conn.execute("ROLLBACK")
            raise

    def _read_all(self) -> dict[bytes, bytes]:
        assert self._conn is not None
        return {bytes(c): bytes(i) for c, i in self._conn.execute("SELECT csn, image FROM nvram")}

    def _delete(self, csn: bytes) -> bool:
        assert self._conn is not None
        return self._conn.execute("DELETE FROM nvram WHERE csn = ?", (csn,)).rowcount > 0

    # --- the event loop's side ----------------------------------------------------------

    def load_all(self) -> dict[bytes, bytes]:
        """Every stored image by CSN (called once at start, before serving)."""
        try:
            return self._thread.submit(self._read_all).result()
        except sqlite3.Error as exc:
            raise NvramError(f"the drive host's NVRAM store {self.path} cannot be read ({exc})") from None

    def import_rows(self, rows: dict[bytes, bytes]) -> None:
        """Store images at once, durably, in one transaction (migrating per-drive files)."""
        if rows:
            try:
                self._thread.submit(self._commit, dict(rows)).result()
            except (sqlite3.Error, OSError) as exc:
                raise NvramError(f"the drive host's NVRAM store {self.path} cannot be written ({exc})") from None

    def forget(self, csn: bytes) -> bool:
        """Remove one drive's row (it starts as from the factory); False if it had none."""
        try:
            return self._thread.submit(self._delete, csn).result()
        except (sqlite3.Error, OSError) as exc:
            raise NvramError(f"the drive host's NVRAM store {self.path} cannot be written ({exc})") from None

    async def write(self, csn: bytes, image: bytes) -> None:
        """Returns once ``image`` is durable; raises OSError if it cannot be."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def settled(error: OSError | None) -> None:
            if waiter.done():
                return
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

        self.submit(csn, image, settled)
        await waiter

    def submit(self, csn: bytes, image: bytes, settled: Settled) -> None:
        """``settled`` is called once ``image`` is durable (None) or cannot be (OSError), from
        the commit's own wake-up: no task, future or callback handle per write."""
        if self._closed:
            asyncio.get_running_loop().call_soon(settled, OSError(f"NVRAM store {self.path}: closed"))
            return
        self._pending.rows[csn] = image  # a later image of the same drive supersedes an unwritten one
        self._pending.waiters.setdefault(csn, []).append(settled)
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending.rows:
            batch, self._pending = self._take_batch()
            try:
                await loop.run_in_executor(self._thread, self._commit, batch.rows)
            except (sqlite3.Error, OSError) as exc:
                self.stats.failures += 1
                _settle(batch, OSError(f"NVRAM store {self.path}: {exc}"))
                continue
            self.stats.commits += 1
            self.stats.rows += len(batch.rows)
            self.stats.largest_batch = max(self.stats.largest_batch, len(batch.rows))
            _settle(batch, None)

    def _take_batch(self) -> tuple[_Pending, _Pending]:
        """Up to MAX_BATCH drives for this commit; the rest stay pending for the next."""
        pending = self._pending
        if len(pending.rows) <= MAX_BATCH:
            return pending, _Pending()
        now, later = _Pending(), _Pending()
        for i, (csn, image) in enumerate(pending.rows.items()):
            part = now if i < MAX_BATCH else later
            part.rows[csn] = image
            part.waiters[csn] = pending.waiters.pop(csn)
        return now, later

    async def drain(self) -> None:
        """Wait until every write made so far is durable (or has failed)."""
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._thread.submit(_close).result()
        self._thread.shutdown(wait=True)


def _settle(batch: _Pending, error: OSError | None) -> None:
    """Tell every write of a batch; one that raises does not keep the others waiting."""
    for waiters in batch.waiters.values():
        for settled in waiters:
            try:
                settled(error)
            except Exception as exc:
                asyncio.get_running_loop().call_exception_handler(
                    {"message": "an NVRAM write's callback raised", "exception": exc})


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def fsync_directory(path: Path) -> None:
    """Make the directory's entries (a link, a rename, an unlink) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
