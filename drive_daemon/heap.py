"""The heap of a process that hosts a pool of drives."""

from __future__ import annotations

import gc

#: Younger collections before a full one is considered, in a pool's host (Python's default: 10).
FULL_COLLECTION_AFTER = 100


def settle_heap() -> None:
    """For a process that hosts a pool, once its drives are up.

    The drives' objects live as long as the process: frozen out of the cyclic collector's
    reach, a pool rekey does not walk them (two full collections took 0.35 s of 10,000
    drives' arming); and a full collection is considered after 100 younger ones instead of
    10, so one burst of 10,000 drives' packages does not start one over what the last write
    left (issue 11). Garbage is still freed by reference count, and cycles by the younger
    collections or a later full one."""
    gc.collect()
    gc.freeze()
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
