"""When a drive asks a token for keys: the spread of its first request, its retries, and the
offers it skips for a while. Sized to the pool (issue 11): no queue at the token, no retry storm."""

from __future__ import annotations

import random
from dataclasses import dataclass

from protocol.constants import (
    MAX_POOL_DRIVES,
    MAX_PULL_SPREAD_S,
    MAX_SKIPPED_OFFERS,
    NO_PACKAGE_SKIP_S,
    PULL_SPREAD_BASE_S,
    PULL_SPREAD_PER_CSN_S,
    RETRY_AFTER_SPREADS,
    RETRY_BACKOFF,
    RETRY_BASE_S,
    RETRY_MAX_S,
    KeyKind,
)


@dataclass
class Pull:
    kind: KeyKind
    timestamp: int
    sources: list[str]
    due: float
    attempt: int = 0
    sequence: int = 0
    #: Scheduled on an offer the drive could not verify (it holds no KMS public key).
    hint: bool = False
    #: The spread window of the offer (seconds): no retry before the token could answer it all.
    spread: float = 0.0


def pull_spread(csn_count: int) -> float:
    """The window (seconds) a drive draws its first KEY_REQUEST's delay from: as long as one
    token takes to answer ``csn_count`` drives (PULL_SPREAD_PER_CSN_S each), so a broadcast
    makes no queue at the token. No offer counts more than MAX_POOL_DRIVES CSNs (no token holds
    more): an unverified one cannot stretch a drive's spread or its retries beyond a real pool's."""
    counted = min(max(0, csn_count), MAX_POOL_DRIVES)
    return min(MAX_PULL_SPREAD_S, PULL_SPREAD_BASE_S + counted * PULL_SPREAD_PER_CSN_S)


def retry_delay(attempt: int, spread: float, rng: random.Random) -> float:
    """How long after request number ``attempt`` (1 = the first) the drive asks again.

    The first retry waits RETRY_AFTER_SPREADS spread windows plus RETRY_BASE_S: by then the
    token has answered every drive of the offer and their host has taken the answers in, so a
    retry means a lost datagram, not a slow queue.
    Each later one is RETRY_BACKOFF times longer (capped at RETRY_MAX_S), all with jitter x[1, 1.5) so the drives
    that lost datagrams do not ask again together. Never less than RETRY_BASE_S apart, so a
    drive's pull stays within a token's per-CSN answer budget."""
    first = RETRY_AFTER_SPREADS * spread + RETRY_BASE_S
    return min(RETRY_MAX_S, first * RETRY_BACKOFF ** (attempt - 1)) * (1 + 0.5 * rng.random())


class SkipList:
    """(token host, timestamp) offers not to pull again after a NO_PACKAGE or a failed
    package, each for NO_PACKAGE_SKIP_S and never for good; at most MAX_SKIPPED_OFFERS."""

    def __init__(self) -> None:
        self._until: dict[tuple[str, int], float] = {}
        self.now = 0.0

    def add(self, key: tuple[str, int]) -> None:
        self._until = {k: t for k, t in self._until.items() if t > self.now}
        if key in self._until or len(self._until) < MAX_SKIPPED_OFFERS:
            self._until[key] = self.now + NO_PACKAGE_SKIP_S

    def __contains__(self, key: object) -> bool:
        until = self._until.get(key)  # type: ignore[call-overload]
        return until is not None and until > self.now

    def __len__(self) -> int:
        return sum(1 for t in self._until.values() if t > self.now)

    def clear(self) -> None:
        self._until.clear()
