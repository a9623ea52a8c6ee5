"""A Bloom filter of CSNs, so one KEYS_AVAILABLE fits a datagram for any pool size.

A drive whose CSN is not in the filter never pulls; a false positive costs one
KEY_REQUEST answered with NO_PACKAGE. With 8,192 bits the false-positive rate
is under 1% up to ~850 CSNs and about 63% at 10,000.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from typing import Iterable

MAX_FILTER_BITS = 8192
MIN_FILTER_BITS = 64
MAX_HASHES = 8


@functools.lru_cache(maxsize=65536)
def _positions(csn: bytes, hash_count: int, bit_count: int) -> tuple[int, ...]:
    """Cached: a host of 10,000 drives tests each of its CSNs against every announcement."""
    digest = hashlib.blake2b(csn, digest_size=4 * hash_count, person=b"t10k-csn").digest()
    return tuple(int.from_bytes(digest[4 * i : 4 * i + 4], "big") % bit_count for i in range(hash_count))


@dataclass(frozen=True)
class CsnFilter:
    hash_count: int
    bits: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.hash_count <= MAX_HASHES:
            raise ValueError(f"CSN filter hash count must be 1..{MAX_HASHES}, got {self.hash_count}")
        if not 1 <= len(self.bits) <= MAX_FILTER_BITS // 8:
            raise ValueError(f"CSN filter must be 1..{MAX_FILTER_BITS // 8} octets, got {len(self.bits)}")

    @classmethod
    def of(cls, csns: Iterable[bytes]) -> CsnFilter:
        members = list(csns)
        n = max(1, len(members))
        bit_count = min(MAX_FILTER_BITS, max(MIN_FILTER_BITS, 8 * math.ceil(10 * n / 8)))
        hash_count = max(1, min(MAX_HASHES, round(bit_count / n * math.log(2))))
        bits = bytearray(bit_count // 8)
        for csn in members:
            for pos in _positions(csn, hash_count, bit_count):
                bits[pos >> 3] |= 1 << (pos & 7)
        return cls(hash_count, bytes(bits))

    def __contains__(self, csn: object) -> bool:
        if not isinstance(csn, bytes):
            return False
        bits = self.bits
        for p in _positions(csn, self.hash_count, 8 * len(bits)):  # a loop: every drive of a pool asks
            if not bits[p >> 3] & (1 << (p & 7)):
                return False
        return True
