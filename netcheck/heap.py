"""The daemons' heaps at scale: what Python's cyclic collector costs a 10,000-drive pool.

A pool-wide write makes ~150,000 objects in one burst, and a drive host keeps every
drive's objects for its lifetime; the collector, triggered by allocation counts, walked
them again and again (issue 11: up to ~40% of the token's time on a write, 0.35 s of a
host's arming). The KMS, the token and the drive host share these two remedies.
"""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

#: Younger collections before a full one is considered, in a pool's host (Python's default: 10).
FULL_COLLECTION_AFTER = 100


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic collection while a write is built or decoded: its objects hold no reference
    cycles and are all kept. The collector runs again, as usual, afterwards (other tasks that
    run meanwhile, for a few milliseconds, just run without it). Nested or already paused:
    left as the outer caller set it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def settle_heap() -> None:
    """For a process that hosts a pool, once its drives are up.

    The drives' objects live as long as the process: frozen out of the cyclic collector's
    reach, a pool rekey does not walk them; and a full collection is considered after 100
    younger ones instead of 10, so one burst of 10,000 drives' packages does not start one
    over what the last write left. Garbage is still freed by reference count, and cycles by
    the younger collections or a later full one."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
