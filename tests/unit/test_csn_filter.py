"""The CSN filter in KEYS_AVAILABLE: no false negatives, few false positives, bounded size."""

from __future__ import annotations

import pytest

from protocol import CsnFilter
from protocol.csn_filter import MAX_FILTER_BITS


@pytest.mark.parametrize("n", [1, 8, 100, 1000, 10_000])
def test_every_member_is_in_and_the_filter_is_bounded(n: int) -> None:
    members = [(0x5700 << 48 | i).to_bytes(8, "big") for i in range(n)]
    f = CsnFilter.of(members)
    assert all(m in f for m in members)
    assert len(f.bits) * 8 <= MAX_FILTER_BITS


@pytest.mark.parametrize(("n", "bound"), [(8, 0.02), (100, 0.02), (800, 0.02), (10_000, 0.75)])
def test_false_positive_rate(n: int, bound: float) -> None:
    members = [(0x5700 << 48 | i).to_bytes(8, "big") for i in range(n)]
    others = [(0x5800 << 48 | i).to_bytes(8, "big") for i in range(5000)]
    f = CsnFilter.of(members)
    rate = sum(o in f for o in others) / len(others)
    assert rate <= bound


def test_filter_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError):
        CsnFilter(0, b"\x00")
    with pytest.raises(ValueError):
        CsnFilter(1, b"\x00" * (MAX_FILTER_BITS // 8 + 1))
