"""The fast codec is the declared layouts, faster: byte-identical for every message, and
never accepting what a layout refuses (malformed input then meets the layout itself)."""

from __future__ import annotations

import dataclasses

import pytest
from construct import ConstructError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import encode_body, fastcodec
from protocol.constants import MessageType
from protocol.layouts import BODIES
from tests.vectors import sample_messages

SAMPLES = sample_messages()
TYPES = sorted(SAMPLES, key=int)


def _declared_parse(message_type: MessageType, body: bytes) -> object:
    """The layout's verdict: a message, or the exception it raises."""
    try:
        message = BODIES[message_type].parse(body)
    except (ConstructError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        return type(exc)
    if len(BODIES[message_type].build(message)) != len(body):
        return "trailing"  # construct alone ignores trailing octets; the codec refuses them
    return message


def test_every_message_type_is_compiled() -> None:
    parsers, builders = fastcodec.compiled()
    assert set(parsers) == set(BODIES) == set(builders)


@pytest.mark.parametrize("message_type", TYPES, ids=lambda t: t.name)
def test_sample_is_byte_identical(message_type: MessageType) -> None:
    message = SAMPLES[message_type]
    body = BODIES[message_type].build(message)
    assert fastcodec.try_build(message) == body
    assert fastcodec.try_parse(message_type, body) == message == BODIES[message_type].parse(body)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(TYPES), st.data())
def test_mutated_bodies_agree_with_the_layout(message_type: MessageType, data: st.DataObject) -> None:
    body = bytearray(BODIES[message_type].build(SAMPLES[message_type]))
    for _ in range(data.draw(st.integers(0, 4))):
        op = data.draw(st.sampled_from(["flip", "set", "cut", "grow", "drop"]))
        if op in ("flip", "set") and body:
            i = data.draw(st.integers(0, len(body) - 1))
            body[i] = body[i] ^ (1 << data.draw(st.integers(0, 7))) if op == "flip" else data.draw(st.integers(0, 255))
        elif op == "cut":
            del body[data.draw(st.integers(0, len(body))):]
        elif op == "grow":
            body += data.draw(st.binary(min_size=1, max_size=40))
        elif op == "drop" and body:
            del body[data.draw(st.integers(0, len(body) - 1))]
    fast = fastcodec.try_parse(message_type, bytes(body))
    declared = _declared_parse(message_type, bytes(body))
    if fast is not None:
        assert fast == declared  # never accepts what the layout refuses, never differs
        assert fastcodec.try_build(fast) == bytes(body)
    elif not isinstance(declared, type) and declared != "trailing":
        pytest.fail(f"the fast path gave up on a valid {message_type.name}: {declared}")


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(TYPES), st.data())
def test_unbuildable_messages_are_left_to_the_layout(message_type: MessageType, data: st.DataObject) -> None:
    """A message forced past its own checks (a field of the wrong size or type) is not built by
    the fast path unless the layout builds exactly the same octets."""
    message = SAMPLES[message_type]
    fields = dataclasses.fields(message)  # type: ignore[arg-type]
    if not fields:
        return
    f = data.draw(st.sampled_from(fields))
    bad = data.draw(st.sampled_from([b"", b"\x00" * 3, b"\xff" * 9, -1, 2**70, "x", None, 1.5]))
    object.__setattr__(forced := dataclasses.replace(message), f.name, bad)  # type: ignore[type-var]
    fast = fastcodec.try_build(forced)
    try:
        declared = encode_body(forced)
    except Exception:  # noqa: BLE001 - the layout refuses: so must the fast path
        assert fast is None
        return
    assert fast in (None, declared)
