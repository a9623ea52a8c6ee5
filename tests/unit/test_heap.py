"""The daemons' collector pause (netcheck/heap.py): off for the burst, back on after, nesting kept."""

from __future__ import annotations

import gc

import pytest

from netcheck.heap import collector_paused


def test_the_collector_is_off_inside_and_on_after_even_when_the_burst_fails() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a write that cannot be built")
    assert gc.isenabled()


def test_an_inner_pause_leaves_the_outer_one_in_force() -> None:
    with collector_paused():
        with collector_paused():
            pass
        assert not gc.isenabled(), "the inner pause turned the collector back on under the outer one"
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off() -> None:
    gc.disable()
    try:
        with collector_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
