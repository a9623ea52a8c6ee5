"""The catalogue: every message round-trips, pinned bytes, and precise decode errors."""

from __future__ import annotations

import struct

import pytest

import protocol as p
from protocol.constants import HEADER_SIZE, MAX_BODY_LENGTH, PROTOCOL_VERSION, HeaderFlag, MessageType
from protocol.errors import DecodeReason
from protocol.layouts import BODIES
from tests.vectors import load_pinned, sample_frames, sample_messages

SAMPLES = sample_messages()
PINNED = load_pinned()


def test_every_message_type_has_a_vector_and_a_layout() -> None:
    assert set(SAMPLES) == set(MessageType) == set(BODIES)
    assert set(PINNED) == {t.name for t in MessageType}


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_build_matches_pinned_bytes(message_type: MessageType) -> None:
    assert p.encode(SAMPLES[message_type], sequence=7).hex() == PINNED[message_type.name]


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_parse_of_pinned_bytes_gives_the_value(message_type: MessageType) -> None:
    frame = p.decode(bytes.fromhex(PINNED[message_type.name]))
    assert frame.message == SAMPLES[message_type]
    assert frame.sequence == 7
    assert type(frame.message) is type(SAMPLES[message_type])  # a dataclass, never a Container


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_authenticated_round_trip(message_type: MessageType) -> None:
    secret = bytes(range(32))
    data = p.encode_authenticated(SAMPLES[message_type], secret=secret, counter=42, sequence=9, reply=True)
    frame = p.decode(data)
    plain = p.encode_body(SAMPLES[message_type])
    # Without the secret: the type, the lengths and the counter, nothing of the body.
    assert frame.sealed and frame.message == p.SealedBody(len(plain) + 16, message_type)
    assert frame.message.TYPE is message_type and frame.counter == 42
    assert len(plain) < 8 or plain not in data
    opened = frame.open(secret)
    assert opened.message == SAMPLES[message_type]
    assert opened.is_reply and opened.authenticated and opened.counter == 42 and opened.sequence == 9


def test_wrong_secret_or_tampering_fails_verification() -> None:
    secret = bytes(32)
    data = p.encode_authenticated(p.ReadStatus(), secret=secret, counter=1)
    with pytest.raises(p.AuthenticationError):
        p.decode(data).open(b"\x01" * 32)
    tampered = bytearray(p.encode_authenticated(p.ClearError(), secret=secret, counter=1))
    tampered[HEADER_SIZE + 16 + 3] ^= 1  # inside the counter, after the 16-octet tag
    with pytest.raises(p.AuthenticationError):
        p.decode(bytes(tampered)).open(secret)
    reflected = bytearray(data)
    reflected[7] ^= int(HeaderFlag.REPLY)  # the REPLY flag is in the header, so in the associated data
    with pytest.raises(p.AuthenticationError):
        p.decode(bytes(reflected)).open(secret)


def test_unauthenticated_frame_cannot_be_verified() -> None:
    with pytest.raises(p.DecodeError, match="not authenticated"):
        p.decode(p.encode(p.ReadStatus())).open(bytes(32))


def _frame(message_type: int = MessageType.KEY_REQUEST, body: bytes = b"", *, magic: bytes = b"T10K",
           version: int = PROTOCOL_VERSION, flags: int = 0, length: int | None = None) -> bytes:
    return magic + struct.pack(">BBHII", version, message_type, flags, 0, len(body) if length is None else length) + body


GOOD_BODY = p.encode_body(SAMPLES[MessageType.KEY_REQUEST])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param(b"", DecodeReason.TRUNCATED, id="empty"),
        pytest.param(b"T10K\x01", DecodeReason.TRUNCATED, id="short-header"),
        pytest.param(_frame(body=GOOD_BODY, magic=b"T10J"), DecodeReason.BAD_MAGIC, id="bad-magic"),
        pytest.param(_frame(body=GOOD_BODY, version=PROTOCOL_VERSION + 1), DecodeReason.UNKNOWN_VERSION, id="version"),
        pytest.param(_frame(0x7F, GOOD_BODY), DecodeReason.UNKNOWN_TYPE, id="type"),
        pytest.param(_frame(body=GOOD_BODY, flags=0x80), DecodeReason.BAD_FIELD, id="flags"),
        pytest.param(_frame(body=GOOD_BODY[:-1]), DecodeReason.TRUNCATED, id="short-body"),
        pytest.param(_frame(body=GOOD_BODY, length=len(GOOD_BODY) + 4), DecodeReason.TRUNCATED, id="length-too-big"),
        pytest.param(_frame(body=GOOD_BODY) + b"x", DecodeReason.LENGTH_MISMATCH, id="trailing-frame"),
        pytest.param(_frame(body=GOOD_BODY + b"x"), DecodeReason.LENGTH_MISMATCH, id="trailing-body"),
        pytest.param(_frame(body=GOOD_BODY[:8] + b"\x09" + GOOD_BODY[9:]), DecodeReason.BAD_FIELD, id="bad-enum"),
        pytest.param(_frame(length=MAX_BODY_LENGTH + 1), DecodeReason.TOO_LARGE, id="too-large"),
    ],
)
def test_malformed_frames_name_what_is_wrong(data: bytes, reason: DecodeReason) -> None:
    with pytest.raises(p.DecodeError) as info:
        p.decode(data)
    assert info.value.reason is reason
    assert reason.value in str(info.value)


def test_a_version_1_peer_is_told_why_it_is_refused() -> None:
    """Version 1 had the TCP 7040 host interface; its frames are refused with the reason and the fix."""
    with pytest.raises(p.DecodeError) as info:
        p.decode(_frame(body=GOOD_BODY, version=1))
    assert info.value.reason is DecodeReason.UNKNOWN_VERSION
    assert "7040" in str(info.value) and "iSCSI" in str(info.value) and "upgrade" in str(info.value)


def test_bad_flag_octet_and_broken_invariant_are_bad_fields() -> None:
    status = bytearray(p.encode_body(SAMPLES[MessageType.VOP_STATUS]))
    status[8] = 2  # encrypting_model (after the 8-octet CSN) must be 0 or 1
    with pytest.raises(p.DecodeError) as info:
        p.decode_body(MessageType.VOP_STATUS, bytes(status))
    assert info.value.reason is DecodeReason.BAD_FIELD
    # a media key package whose write key is not among its keys
    body = bytearray(p.encode_body(SAMPLES[MessageType.MEDIA_KEY_PACKAGE]))
    body[24] ^= 0xFF  # first octet of write_key_id
    with pytest.raises(p.DecodeError, match="write key"):
        p.decode_body(MessageType.MEDIA_KEY_PACKAGE, bytes(body))


def test_stream_reader_learns_the_frame_length_from_the_header() -> None:
    data = p.encode_authenticated(SAMPLES[MessageType.WRITE_OKT], secret=bytes(32), counter=5)
    info = p.decode_header(data[:HEADER_SIZE])
    assert HEADER_SIZE + info.remaining == len(data)
    # fed in arbitrary fragments, the reassembled frame decodes the same
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)]
    assert p.decode(b"".join(chunks)).open(bytes(32)).message == SAMPLES[MessageType.WRITE_OKT]


def test_messages_check_their_invariants_on_construction() -> None:
    with pytest.raises(ValueError, match="csn must be 8 octets"):
        p.KeyRequest(b"short", SAMPLES[MessageType.KEY_REQUEST].kind, 0)
    media = SAMPLES[MessageType.MEDIA_KEY_PACKAGE]
    assert isinstance(media, p.MediaKeyPackage)
    with pytest.raises(ValueError, match="1..32 keys"):
        p.MediaKeyPackage(media.csn, 1, media.device_key_id, media.write_key_id, media.receipt,
                          tuple(p.WrappedMediaKey(i.to_bytes(8, "big"), bytes(12), bytes(48)) for i in range(33)))


def test_encode_refuses_a_sequence_that_does_not_fit() -> None:
    with pytest.raises(p.EncodeError):
        p.encode(p.ReadStatus(), sequence=2**32)


def test_frames_match_shared_vectors() -> None:
    assert {t.name: f.hex() for t, f in sample_frames().items()} == PINNED
