"""A token serves each package as the octets the KMS sealed: where they lie in a write's body."""

from __future__ import annotations

import os
import random

import pytest

import protocol as p
from protocol import envelope
from protocol.constants import (
    MAX_CLEAR_AUTHORIZATIONS,
    MAX_MEDIA_KEYS,
    NONCE_SIZE,
    REPORT_KEY_SIZE,
    WRAPPED_DEVICE_KEY_SIZE,
    WRAPPED_KEY_SIZE,
    WRAPPED_RECEIPT_SIZE,
    MessageType,
    TokenMode,
    Wrapping,
)
from protocol.messages import RECEIPT_HASH_SIZE
from protocol.writes import package_octets

TS = 1_800_000_000_000_000
SIGNING_KEY = envelope.new_signing_key()


def _auths(rng: random.Random, csn: bytes) -> tuple[p.ClearAuthorization, ...]:
    return tuple(p.ClearAuthorization(csn, os.urandom(8), os.urandom(16))
                 for _ in range(rng.randint(0, MAX_CLEAR_AUTHORIZATIONS)))


def _okt(rng: random.Random, n: int, pool: str) -> p.WriteOkt:
    entries = []
    for i in range(n):
        csn = (0x5800_0000_0000_0000 + i).to_bytes(8, "big")
        ids = [os.urandom(8) for _ in range(rng.randint(1, MAX_MEDIA_KEYS))]
        keys = tuple(p.WrappedMediaKey(k, os.urandom(NONCE_SIZE), os.urandom(WRAPPED_KEY_SIZE)) for k in ids)
        receipt = p.WrappedReceipt(os.urandom(NONCE_SIZE), os.urandom(WRAPPED_RECEIPT_SIZE))
        package = p.MediaKeyPackage(csn, TS, os.urandom(8), rng.choice(ids), receipt, keys)
        entries.append(p.OktEntry(package, os.urandom(RECEIPT_HASH_SIZE), os.urandom(REPORT_KEY_SIZE), _auths(rng, csn)))
    announcement = envelope.sign_announcement(SIGNING_KEY, TokenMode.OKT, TS, [e.package.csn for e in entries])
    return p.WriteOkt(pool, TS, tuple(entries), announcement)


def _ekt(rng: random.Random, n: int) -> p.WriteEkt:
    entries = []
    for i in range(n):
        csn = (0x5900_0000_0000_0000 + i).to_bytes(8, "big")
        package = p.DeviceKeyPackage(csn, TS, os.urandom(8), rng.choice(list(Wrapping)), os.urandom(8),
                                     os.urandom(NONCE_SIZE), os.urandom(WRAPPED_DEVICE_KEY_SIZE))
        entries.append(p.EktEntry(package, os.urandom(RECEIPT_HASH_SIZE), os.urandom(REPORT_KEY_SIZE), _auths(rng, csn)))
    announcement = envelope.sign_announcement(SIGNING_KEY, TokenMode.EKT, TS, [e.package.csn for e in entries])
    return p.WriteEkt(TS, tuple(entries), announcement)


@pytest.mark.parametrize("seed", range(12))
def test_each_package_is_cut_from_the_body_exactly_as_it_was_encoded(seed: int) -> None:
    rng = random.Random(seed)
    pool = rng.choice(["P", "", "pool-éß✓", "x" * 200])
    for write in (_okt(rng, rng.randint(1, 40), pool), _ekt(rng, rng.randint(1, 40))):
        body = p.encode_body(write)
        decoded = p.decode_body(write.TYPE, body)
        octets = package_octets(decoded, body)  # type: ignore[arg-type]
        assert octets == [p.encode_body(e.package) for e in write.entries]
        assert [p.decode_body(e.package.TYPE, o) for e, o in zip(write.entries, octets, strict=True)] == \
            [e.package for e in write.entries]


def test_a_body_that_is_not_the_messages_is_refused() -> None:
    rng = random.Random(1)
    write, other = _okt(rng, 5, "P"), _okt(rng, 5, "P")
    body = p.encode_body(write)
    with pytest.raises(p.DecodeError):
        package_octets(write, body[:-1])
    with pytest.raises(p.DecodeError):
        package_octets(write, body + b"\x00")
    with pytest.raises(p.DecodeError):  # same shape, other CSNs: the first package is not there
        shifted = p.WriteOkt("Q", TS, tuple(reversed(other.entries)), other.announcement)
        package_octets(shifted, p.encode_body(other))
    assert MessageType.WRITE_OKT is write.TYPE
