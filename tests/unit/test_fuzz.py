"""Property tests: random and mutated bytes only ever raise DecodeError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol as p
from protocol.constants import KeyKind
from tests.vectors import sample_frames

FRAMES = list(sample_frames().values()) + [
    p.encode_authenticated(p.ReadStatus(), secret=bytes(32), counter=3),
]


def _decode_or_protocol_error(data: bytes) -> None:
    try:
        frame = p.decode(data)
    except p.DecodeError as exc:
        assert exc.reason is not None
        return
    # Whatever decodes re-encodes to the very same bytes: one encoding per message.
    if frame.authenticated:
        return
    assert p.encode(frame.message, sequence=frame.sequence, reply=frame.is_reply) == data


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_random_bodies_behind_a_valid_header(body: bytes) -> None:
    for frame in FRAMES[:18]:
        header = bytearray(frame[:16])
        header[12:16] = len(body).to_bytes(4, "big")
        _decode_or_protocol_error(bytes(header) + body)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(FRAMES)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        else:
            del data[i : i + draw(st.integers(1, 8))]
    return bytes(data)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutated_valid_frames(data: bytes) -> None:
    _decode_or_protocol_error(data)


@given(st.binary(min_size=8, max_size=8), st.sampled_from(list(KeyKind)), st.integers(0, 2**64 - 1),
       st.integers(0, 2**32 - 1))
def test_key_request_round_trip(csn: bytes, kind: KeyKind, ts: int, seq: int) -> None:
    message = p.KeyRequest(csn, kind, ts)
    frame = p.decode(p.encode(message, sequence=seq))
    assert frame.message == message and frame.sequence == seq
