"""The drive host's one timer for every drive's deadline (drive_daemon/deadlines.py), on a real loop."""

from __future__ import annotations

import asyncio
import time

from drive_daemon.deadlines import COMPACT_MIN, Deadlines


class Owner:
    """Holds one current deadline, like a hosted drive; records when it ran."""

    def __init__(self, name: str, log: list[tuple[str, float]], deadlines: Deadlines) -> None:
        self.name, self.log, self.deadlines = name, log, deadlines
        self.due: float | None = None
        self.then: list[float] = []  # deadlines to set, one after another, each time it runs

    def set(self, due: float | None) -> None:
        self.due = due
        if due is not None:
            self.deadlines.add(due, self)

    def deadline_current(self, due: float) -> bool:
        return due == self.due

    def deadline_reached(self, now: float) -> None:
        self.due = None
        self.log.append((self.name, now))
        if self.then:
            self.set(self.then.pop(0))


async def test_owners_run_in_deadline_order_and_not_before() -> None:
    deadlines, log = Deadlines(), []
    start = time.time()
    owners = {n: Owner(n, log, deadlines) for n in "abc"}
    owners["b"].set(start + 0.06)
    owners["a"].set(start + 0.02)
    owners["c"].set(start + 0.04)
    await asyncio.sleep(0.15)
    assert [n for n, _ in log] == ["a", "c", "b"]
    for (name, ran), offset in zip(log, (0.02, 0.04, 0.06), strict=True):
        assert ran >= start + offset, f"{name} ran early"


async def test_a_moved_or_cancelled_deadline_does_not_run() -> None:
    deadlines, log = Deadlines(), []
    start = time.time()
    moved, cancelled = Owner("moved", log, deadlines), Owner("cancelled", log, deadlines)
    moved.set(start + 0.02)
    cancelled.set(start + 0.02)
    moved.set(start + 0.08)  # the old entry stays in the heap, no longer current
    cancelled.set(None)
    await asyncio.sleep(0.05)
    assert log == []
    await asyncio.sleep(0.08)
    assert [n for n, _ in log] == ["moved"]
    assert log[0][1] >= start + 0.08


async def test_an_earlier_deadline_added_later_rearms_the_timer() -> None:
    deadlines, log = Deadlines(), []
    start = time.time()
    late, early = Owner("late", log, deadlines), Owner("early", log, deadlines)
    late.set(start + 5.0)
    early.set(start + 0.02)
    await asyncio.sleep(0.1)
    assert [n for n, _ in log] == ["early"]
    deadlines.close()


async def test_deadlines_set_while_firing_keep_their_order() -> None:
    """An owner that runs and sets a later deadline must not delay another owner due before it."""
    deadlines, log = Deadlines(), []
    start = time.time()
    first, second = Owner("first", log, deadlines), Owner("second", log, deadlines)
    first.then = [start + 0.5]  # re-armed far out while firing
    first.set(start + 0.01)
    second.set(start + 0.05)
    await asyncio.sleep(0.15)
    assert [n for n, _ in log] == ["first", "second"]
    assert log[1][1] < start + 0.3, "the second owner waited for the first one's new deadline"
    deadlines.close()


async def test_stale_entries_are_compacted_away() -> None:
    deadlines, log = Deadlines(), []
    owner = Owner("o", log, deadlines)
    far = time.time() + 60
    for i in range(10 * COMPACT_MIN):
        owner.set(far + i)  # each move leaves a stale entry behind
    assert len(deadlines) <= 2 * COMPACT_MIN + 1
    deadlines.close()
    assert len(deadlines) == 0


async def test_close_stops_every_deadline() -> None:
    deadlines, log = Deadlines(), []
    Owner("o", log, deadlines).set(time.time() + 0.02)
    deadlines.close()
    await asyncio.sleep(0.06)
    assert log == []
