"""Every hosted drive's next deadline (a pull to send, a retry) behind one event-loop timer.

A timer per drive put 10,000 TimerHandles in asyncio's heap, each compared by a Python
``__lt__`` and cancelled one by one as packages came in; that cost a pool rekey more than
a tenth of its arming (issue 11). Here a host keeps plain ``(due, seq, owner)`` tuples,
compared in C, arms one loop timer for the earliest, and runs every owner due at the same
wake-up in one pass. An owner moved to another deadline leaves its old entry behind; it is
skipped when it comes up (the owner says which deadline is current).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol

#: The heap is rebuilt without stale entries when it grows past this, or past twice its size
#: after the last rebuild: each entry is looked at O(1) times on average.
COMPACT_MIN = 1024


class Owner(Protocol):
    def deadline_current(self, due: float) -> bool:
        """Is ``due`` still this owner's deadline (not moved or cancelled since)?"""

    def deadline_reached(self, now: float) -> None:
        """``due`` came (wall clock ``now``): do what was due, then set the next deadline."""


class Deadlines:
    """One timer on the running loop for many owners' wall-clock deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Owner]] = []
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_due: float | None = None
        self._firing = False
        self._compact_at = COMPACT_MIN

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, due: float, owner: Owner) -> None:
        """Call ``owner.deadline_reached`` at wall-clock ``due``, if it is still current then."""
        heap = self._heap
        heapq.heappush(heap, (due, next(self._seq), owner))
        if len(heap) > self._compact_at:
            self._compact()
        if not self._firing and (self._timer_due is None or due < self._timer_due):
            self._arm(due)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_due = None
        self._heap.clear()

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = asyncio.get_running_loop().call_later(max(0.0, due - time.time()), self._fire)

    def _fire(self) -> None:
        self._timer = self._timer_due = None
        now = time.time()
        self._firing = True  # owners set new deadlines as they run: one timer is armed after
        try:
            while self._heap and self._heap[0][0] <= now:
                due, _, owner = heapq.heappop(self._heap)
                if owner.deadline_current(due):
                    owner.deadline_reached(now)
        finally:
            self._firing = False
            if self._heap:
                self._arm(self._heap[0][0])

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if entry[2].deadline_current(entry[0])]
        heapq.heapify(self._heap)
        self._compact_at = max(COMPACT_MIN, 2 * len(self._heap))
