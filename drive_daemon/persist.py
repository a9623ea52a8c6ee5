"""A drive host's NVRAM glue: its one store opened and loaded at start, each drive's writes
in order, and the sends that must wait for them.

A persisting change is serialised at once (consistent) and handed to the store, which
commits whatever drives changed meanwhile in one transaction; the drive's sends (a KEY_ACK
says "stored") go only once that commit is durable, and its later sends queue behind it, so
per-drive order holds. A write is one future in the store, not a thread, task or file.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from pathlib import Path
from typing import Callable, Protocol

from protocol.manufacturing import ManufacturedDrive
from protocol.transport import Transmit

from .errors import NvramError
from .nvram import DECODE_ERRORS, Nvram, decode_nvram, encode_nvram, legacy_path, remove_stale_temporary
from .nvram_store import STORE_NAME, NvramStore, fsync_directory

log = logging.getLogger("t10k.drive")

#: Opens the host's store at a path; injectable for tests of failing disks.
StoreFactory = Callable[[Path], NvramStore]
#: Distinct write errors logged (each once); past this many, failures are only counted.
MAX_LOGGED_ERRORS = 32


class _Counters(Protocol):
    nvram_failures: int


def forget_hint(state_dir: Path, csn: bytes) -> str:
    """What a person can do about one drive's unusable NVRAM."""
    return (f"stop its host and run 't10k drive forget-nvram --state {state_dir} --csn {csn.hex()}' to start the "
            f"drive as from the factory (it will then need an EKT with 'use PCkey')")


class HostNvram:
    """The store of one drive host: every drive's NVRAM loaded at construction, writes in order."""

    def __init__(self, state_dir: Path, drives: list[ManufacturedDrive], counters: _Counters,
                 store: StoreFactory = NvramStore) -> None:
        self.state_dir = state_dir
        self.counters = counters
        self.store = store(state_dir / STORE_NAME)
        self._outstanding = 0  # writes and sends queued behind them, every drive
        self._logged: set[str] = set()
        try:
            self.loaded = self._load(drives)
        except BaseException:
            self.store.close()
            raise

    def _load(self, drives: list[ManufacturedDrive]) -> dict[bytes, Nvram]:
        files: dict[bytes, bytes] = {}
        for made in drives:
            if remove_stale_temporary(self.state_dir, made.csn):
                log.info("drive %s: removed a temporary NVRAM image left by an interrupted write", made.csn.hex())
            path = legacy_path(self.state_dir, made.csn)
            try:
                image = path.read_bytes()
            except FileNotFoundError:
                continue
            self._decode(image, made, str(path))  # a damaged file is named before anything moves
            files[made.csn] = image
        rows = self.store.load_all()
        if files:
            self._import(files)
            rows.update(files)
        return {made.csn: self._decode(rows[made.csn], made, str(self.store.path)) if made.csn in rows else Nvram()
                for made in drives}

    def _import(self, files: dict[bytes, bytes]) -> None:
        """This host's drives' files of the old layout: into the store durably, in one commit, and
        only then removed (a kill between the two leaves both: the next start imports again)."""
        self.store.import_rows(files)
        for csn in files:
            legacy_path(self.state_dir, csn).unlink(missing_ok=True)
        fsync_directory(self.state_dir)
        log.info("drive host: imported %d drive NVRAM file(s) into %s", len(files), self.store.path)

    def _decode(self, image: bytes, made: ManufacturedDrive, where: str) -> Nvram:
        try:
            return decode_nvram(image, made.csn, made.pckey)
        except DECODE_ERRORS as exc:
            raise NvramError(f"drive {made.csn.hex()}'s NVRAM in {where} cannot be used ({exc}); "
                             f"{forget_hint(self.state_dir, made.csn)}") from None

    def drive(self, made: ManufacturedDrive, send: Callable[[Transmit], None]) -> DriveNvram:
        return DriveNvram(self, made, send)

    def failed(self, csn: bytes, exc: BaseException) -> None:
        """A write that is not durable: counted, its replies dropped, logged once per distinct error."""
        self.counters.nvram_failures += 1
        reason = str(exc)
        if reason not in self._logged and len(self._logged) < MAX_LOGGED_ERRORS:
            self._logged.add(reason)
            log.error("drive %s: NVRAM write failed (%s): its replies are not sent (the token keeps the package); "
                      "other writes failing alike are only counted (nvram_failures)", csn.hex(), reason)

    async def flush(self) -> None:
        """Wait until every write made so far is durable (or failed) and the sends behind it went."""
        while self._outstanding:
            await self.store.drain()
            await asyncio.sleep(0)  # the writes' callbacks run the sends

    async def close(self) -> None:
        await self.flush()
        self.store.close()


class _Queued:
    """Sends waiting in a drive's queue, behind its write (if any) and every earlier one."""

    __slots__ = ("owner", "writing", "error", "sends")

    def __init__(self, owner: DriveNvram, writing: bool, sends: list[Transmit]) -> None:
        self.owner, self.writing, self.sends = owner, writing, sends
        self.error: OSError | None = None

    def __call__(self, error: OSError | None) -> None:
        """The store settled this write."""
        self.writing, self.error = False, error
        self.owner._drain()


class DriveNvram:
    """One drive's writes and the sends queued behind them."""

    def __init__(self, host: HostNvram, made: ManufacturedDrive, send: Callable[[Transmit], None]) -> None:
        self.host, self.made, self.send = host, made, send
        self._queue: collections.deque[_Queued] = collections.deque()

    @property
    def busy(self) -> bool:
        """Something is queued: a new send must wait behind it."""
        return bool(self._queue)

    def push(self, nvram: Nvram | None, sends: list[Transmit]) -> None:
        """Write ``nvram`` (serialised now) if given; send ``sends`` once it and every earlier write are durable."""
        queued = _Queued(self, nvram is not None, sends)
        self._queue.append(queued)
        self.host._outstanding += 1
        if nvram is not None:
            self.host.store.submit(self.made.csn, encode_nvram(self.made.csn, self.made.pckey, nvram), queued)
        else:
            self._drain()

    def _drain(self) -> None:
        queue = self._queue
        while queue:
            queued = queue[0]
            if queued.writing:
                return
            queue.popleft()
            self.host._outstanding -= 1
            if queued.error is not None:
                self.host.failed(self.made.csn, queued.error)
                continue
            for t in queued.sends:
                self.send(t)


def forget_nvram(state_dir: Path, csn: bytes) -> list[str]:
    """Remove one drive's NVRAM (its row in the host's store, and a file of the old layout):
    the drive starts as from the factory. Returns what was removed."""
    removed = []
    path = legacy_path(state_dir, csn)
    if path.exists():
        path.unlink()
        removed.append(str(path))
    if (state_dir / STORE_NAME).exists():
        store = NvramStore(state_dir / STORE_NAME)
        try:
            if store.forget(csn):
                removed.append(f"its row in {store.path}")
        finally:
            store.close()
    return removed
