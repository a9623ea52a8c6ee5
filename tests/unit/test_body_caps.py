"""The per-type body caps fit the largest pool the design allows, and the MAC is checked on raw octets."""

from __future__ import annotations

import os

import pytest

from protocol import AuthenticationError, DecodeError, authenticate, encode, encode_authenticated, encode_body
from protocol.constants import (
    MAX_BODY_LENGTH,
    MAX_CLEAR_AUTHORIZATIONS,
    MAX_DATAGRAM,
    MAX_MEDIA_KEYS,
    MAX_POOL_DRIVES,
    MessageType,
    Wrapping,
)
from protocol.layouts import MANAGEMENT_BODY_CAPS, body_cap
from protocol.csn_filter import MAX_FILTER_BITS, MAX_HASHES, CsnFilter
from protocol.messages import (
    MAX_TEXT,
    Announcement,
    ClearAuthorization,
    DeviceKeyPackage,
    EktEntry,
    MediaKeyPackage,
    OktEntry,
    ReadStatus,
    WrappedMediaKey,
    WrappedReceipt,
    WriteEkt,
    WriteOkt,
)

TS = 1_700_000_000_000_000


def _auths(csn: bytes) -> tuple[ClearAuthorization, ...]:
    return tuple(ClearAuthorization(csn, os.urandom(8), os.urandom(16)) for _ in range(MAX_CLEAR_AUTHORIZATIONS))


def _okt_entry(i: int) -> OktEntry:
    csn = i.to_bytes(8, "big")
    keys = tuple(WrappedMediaKey(os.urandom(8), os.urandom(12), os.urandom(48)) for _ in range(MAX_MEDIA_KEYS))
    package = MediaKeyPackage(csn, TS, os.urandom(8), keys[0].key_id, WrappedReceipt(os.urandom(12), os.urandom(32)), keys)
    return OktEntry(package, os.urandom(32), os.urandom(32), _auths(csn))


def _ekt_entry(i: int) -> EktEntry:
    csn = i.to_bytes(8, "big")
    package = DeviceKeyPackage(csn, TS, os.urandom(8), Wrapping.PCKEY, os.urandom(8), os.urandom(12), os.urandom(96))
    return EktEntry(package, os.urandom(32), os.urandom(32), _auths(csn))


def _announcement(n: int) -> Announcement:
    """The largest signed announcement (a full filter), whatever the pool size."""
    return Announcement(n, CsnFilter(MAX_HASHES, bytes(MAX_FILTER_BITS // 8)), os.urandom(64))


@pytest.mark.parametrize("kind", ["okt", "ekt"])
def test_a_write_for_the_largest_pool_fits_its_cap_and_one_drive_more_does_not(kind: str) -> None:
    if kind == "okt":
        def body(n: int) -> bytes:
            return encode_body(WriteOkt("p" * 200, TS, tuple(_okt_entry(i) for i in range(n)), _announcement(n)))
        cap = MANAGEMENT_BODY_CAPS[MessageType.WRITE_OKT]
    else:
        def body(n: int) -> bytes:
            return encode_body(WriteEkt(TS, tuple(_ekt_entry(i) for i in range(n)), _announcement(n)))
        cap = MANAGEMENT_BODY_CAPS[MessageType.WRITE_EKT]
    one, two = len(body(1)), len(body(2))
    per_drive = two - one
    largest = one + (MAX_POOL_DRIVES - 1) * per_drive
    assert largest <= cap < largest + per_drive + 4 * MAX_TEXT  # slack: the longest pool name
    assert cap < MAX_BODY_LENGTH


def test_every_other_request_is_capped_at_a_datagram() -> None:
    assert body_cap(MessageType.READ_STATUS) == body_cap(MessageType.VOP_LOAD) == MAX_DATAGRAM


def test_authenticate_checks_the_raw_frame() -> None:
    secret = os.urandom(32)
    frame = encode_authenticated(ReadStatus(), secret=secret, counter=7, sequence=3)
    opened = authenticate(frame, secret)
    assert (opened.info.message_type, opened.info.sequence, opened.counter) == (MessageType.READ_STATUS, 3, 7)
    assert opened.frame().message == ReadStatus()
    with pytest.raises(AuthenticationError):
        authenticate(frame, os.urandom(32))
    with pytest.raises(AuthenticationError):
        authenticate(frame[:-1] + bytes([frame[-1] ^ 1]), secret)
    with pytest.raises(DecodeError):
        authenticate(frame[:-1], secret)
    with pytest.raises(DecodeError):
        authenticate(encode(ReadStatus()), secret)  # not authenticated at all
