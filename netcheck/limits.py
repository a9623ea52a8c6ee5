"""What a listener grants a peer: connection caps, bounded reads, counted and rate-limited logs.

Shared by the daemons' TCP listeners so that no listener allocates what a peer declares:
a body is read in bounded chunks, only after its header passed its checks, within a
deadline; a peer holds at most ``per_peer`` connections and the listener ``total``; what is
refused is counted per reason and logged at most once per reason per interval.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

#: Octets read from a stream at a time: memory follows what arrived, never what was declared.
READ_CHUNK = 64 * 1024


class ConnectionGate:
    """Admits a connection when its peer holds fewer than ``per_peer`` and the listener fewer than ``total``."""

    def __init__(self, per_peer: int, total: int) -> None:
        self.per_peer, self.total = per_peer, total
        self._open: collections.Counter[str] = collections.Counter()

    @property
    def open(self) -> int:
        return sum(self._open.values())

    def admit(self, peer: str) -> str | None:
        """None when admitted (call :meth:`release` when it ends), else the reason it was refused."""
        if self.open >= self.total:
            return "total_cap"
        if self._open[peer] >= self.per_peer:
            return "per_peer_cap"
        self._open[peer] += 1
        return None

    def release(self, peer: str) -> None:
        self._open[peer] -= 1
        if self._open[peer] <= 0:
            del self._open[peer]


class ReasonLog:
    """Counts events per reason; logs one line per reason per ``interval_s`` at most."""

    def __init__(self, logger: logging.Logger, counts: collections.Counter[str], interval_s: float = 10.0) -> None:
        self._log, self.counts, self.interval_s = logger, counts, interval_s
        self._last: dict[str, float] = {}
        self._since: collections.Counter[str] = collections.Counter()

    def note(self, reason: str, message: str) -> None:
        self.counts[reason] += 1
        self._since[reason] += 1
        now = time.monotonic()
        if now - self._last.get(reason, -self.interval_s) >= self.interval_s:
            self._log.info("%s (%s: %d since the last such line)", message, reason, self._since.pop(reason))
            self._last[reason] = now


async def read_bounded(reader: asyncio.StreamReader, n: int, deadline_s: float) -> bytes:
    """Exactly ``n`` octets, read in chunks of at most READ_CHUNK, all within ``deadline_s``.

    Raises asyncio.IncompleteReadError (peer closed) or TimeoutError (deadline passed)."""
    parts: list[bytes] = []
    got = 0
    async with asyncio.timeout(deadline_s):
        while got < n:
            part = await reader.read(min(READ_CHUNK, n - got))
            if not part:
                raise asyncio.IncompleteReadError(b"".join(parts), n)
            parts.append(part)
            got += len(part)
    return b"".join(parts)
