"""When a drive asks for keys: the spread of a pool's first requests and the retry schedule.

Every schedule here is drawn from a seeded rng: no clock, no timed assertion.
"""

from __future__ import annotations

import math
import random

import pytest

from drive_daemon.drive import pull_spread, retry_delay
from protocol.constants import (
    KEY_REQUEST_ANSWERS_PER_CSN_PER_S,
    MAX_POOL_DRIVES,
    MAX_PULL_ATTEMPTS,
    MAX_PULL_SPREAD_S,
    PULL_SPREAD_BASE_S,
    PULL_SPREAD_PER_CSN_S,
    RETRY_AFTER_SPREADS,
    RETRY_BACKOFF,
    RETRY_BASE_S,
    RETRY_MAX_S,
)

POOLS = [1, 100, 1_000, 5_000, 10_000]
#: The design's loss figure: each KEY_REQUEST and each answer lost with this probability.
LOSS = 0.05


def _requests(pool: int, rng: random.Random) -> list[float]:
    """When one drive sends each of its requests if none is answered (time 0: the broadcast)."""
    spread = pull_spread(pool)
    times = [rng.uniform(0, spread)]
    for attempt in range(1, MAX_PULL_ATTEMPTS):
        times.append(times[-1] + retry_delay(attempt, spread, rng))
    return times


def test_the_spread_grows_with_the_pool_and_is_bounded() -> None:
    assert pull_spread(0) == PULL_SPREAD_BASE_S
    assert pull_spread(10_000) == pytest.approx(PULL_SPREAD_BASE_S + 10_000 * PULL_SPREAD_PER_CSN_S)
    assert [pull_spread(n) for n in POOLS] == sorted(pull_spread(n) for n in POOLS)
    assert pull_spread(10**9) == pull_spread(MAX_POOL_DRIVES) <= MAX_PULL_SPREAD_S  # no pool is larger
    # The 10,000-drive pool's first requests all go out within the 1 s goal for arming it.
    assert pull_spread(10_000) < 1.0


def test_an_offer_claiming_a_huge_pool_cannot_hold_a_drive_back() -> None:
    """An unverified offer (a drive without the KMS public key takes it as a hint) may claim any
    csn_count: the drive's first request and first retry still come as soon as for a real pool."""
    rng = random.Random(5)
    worst = max(_requests(2**32 - 1, rng)[1] for _ in range(1_000))
    assert worst < 1.5 * (RETRY_AFTER_SPREADS + 1) * pull_spread(MAX_POOL_DRIVES) + 1.5 * RETRY_BASE_S < 3.0


@pytest.mark.parametrize("pool", POOLS)
def test_the_first_retry_waits_for_the_whole_spread_window(pool: int) -> None:
    rng = random.Random(pool)
    spread = pull_spread(pool)
    for _ in range(1_000):
        first = retry_delay(1, spread, rng)
        assert RETRY_AFTER_SPREADS * spread + RETRY_BASE_S <= first < 1.5 * (RETRY_AFTER_SPREADS * spread + RETRY_BASE_S)


@pytest.mark.parametrize("pool", POOLS)
def test_retries_back_off_exponentially_up_to_a_cap(pool: int) -> None:
    rng = random.Random(7 + pool)
    spread = pull_spread(pool)
    first = RETRY_AFTER_SPREADS * spread + RETRY_BASE_S
    for _ in range(200):
        delays = [retry_delay(a, spread, rng) for a in range(1, MAX_PULL_ATTEMPTS + 1)]
        for attempt, delay in enumerate(delays, start=1):
            nominal = min(RETRY_MAX_S, first * RETRY_BACKOFF ** (attempt - 1))
            assert nominal <= delay < 1.5 * nominal
    assert RETRY_BACKOFF > 1  # exponential: an overloaded token sees fewer and fewer retries


def test_the_jitter_spreads_retries_apart() -> None:
    rng = random.Random(3)
    spread = pull_spread(10_000)
    delays = [retry_delay(1, spread, rng) for _ in range(10_000)]
    # Drives that lost the same broadcast's datagrams do not all ask again at one instant:
    # their retries cover half the first delay again.
    assert max(delays) - min(delays) > 0.45 * (RETRY_AFTER_SPREADS * spread + RETRY_BASE_S)


@pytest.mark.parametrize("pool", POOLS)
def test_a_retry_schedule_never_exceeds_the_answer_budget(pool: int) -> None:
    """However the jitter falls, one drive's requests fit in the token's per-CSN budget: any
    one-second window (the token's are aligned to the second; any window here) holds at most
    KEY_REQUEST_ANSWERS_PER_CSN_PER_S of them, so a throttled answer is never a legitimate one."""
    rng = random.Random(11 + pool)
    for _ in range(500):
        offset = rng.uniform(0, 1)  # where the broadcast falls in the token's second
        times = [offset + t for t in _requests(pool, rng)]
        for i, start in enumerate(times):
            in_window = sum(1 for t in times[i:] if t < start + 1.0)
            assert in_window <= KEY_REQUEST_ANSWERS_PER_CSN_PER_S
        per_second: dict[int, int] = {}
        for t in times:
            per_second[math.floor(t)] = per_second.get(math.floor(t), 0) + 1
        assert max(per_second.values()) <= KEY_REQUEST_ANSWERS_PER_CSN_PER_S


def test_a_ten_thousand_drive_pool_converges_with_five_percent_loss() -> None:
    """An attempt fails when its request or its answer is lost: p = 1 - 0.95**2. The chance that
    some drive of 10,000 fails all MAX_PULL_ATTEMPTS is under 1 in 1,000 (it would pull again at
    the next announcement)."""
    p_attempt = 1 - (1 - LOSS) ** 2
    p_some_drive_gives_up = 1 - (1 - p_attempt**MAX_PULL_ATTEMPTS) ** 10_000
    assert p_some_drive_gives_up < 1e-3


def test_a_simulated_pool_with_loss_is_armed_without_giving_up() -> None:
    """10,000 drives, each datagram lost with 5%, the schedule above (seeded): every drive gets
    its keys, and how long the last one waits follows from the schedule, not from luck."""
    rng = random.Random(2026)
    pool = 10_000
    finished, attempts_used = [], []
    for _ in range(pool):
        times = _requests(pool, rng)
        for attempt, sent in enumerate(times, start=1):
            if rng.random() >= LOSS and rng.random() >= LOSS:  # request arrives, answer arrives
                finished.append(sent)
                attempts_used.append(attempt)
                break
    assert len(finished) == pool
    assert max(attempts_used) < MAX_PULL_ATTEMPTS
    # ~90% on the first request, inside the spread window; nearly all by the first retry.
    assert sum(1 for a in attempts_used if a == 1) > 0.88 * pool
    assert sum(1 for a in attempts_used if a <= 2) > 0.985 * pool
