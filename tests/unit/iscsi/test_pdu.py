"""The PDU catalogue: field names agree with the BHS, encode/decode round trips, known bytes."""

from __future__ import annotations

import dataclasses

import pytest

from protocol.iscsi import (
    PDU_CLASSES,
    R2T,
    DataIn,
    DataOut,
    IscsiDecodeError,
    IscsiReason,
    LoginRequest,
    NopOut,
    PduReader,
    Reject,
    ScsiCommand,
    ScsiResponse,
    TextRequest,
    decode_bhs,
    decode_text,
    digest,
    encode_pdu_bytes,
    encode_text,
)
from protocol.iscsi.pdu import pdu_fields

SAMPLES = [
    NopOut(immediate=True, itt=7, cmdsn=3, expstatsn=9, data=b"ping"),
    ScsiCommand(itt=1, cmdsn=2, expstatsn=3, read=True, expected_length=96, cdb=bytes([0x12, 0, 0, 0, 96, 0]).ljust(16, b"\0")),
    ScsiCommand(itt=1, cmdsn=2, write=True, final=False, expected_length=5, cdb=bytes(16), data=b"hello"),
    ScsiResponse(itt=5, status=2, statsn=4, expcmdsn=5, maxcmdsn=36, underflow=True, residual=12, data=b"\0\x02pq"),
    DataIn(final=True, has_status=True, itt=9, datasn=2, offset=8192, statsn=1, data=bytes(range(7))),
    DataOut(final=True, itt=9, ttt=0x1234, datasn=1, offset=4096, data=b"x" * 13),
    R2T(itt=9, ttt=3, r2tsn=1, offset=65536, length=131072),
    LoginRequest(transit=True, csg=1, nsg=3, isid=b"\x80\x01\x02\x03\x04\x05", itt=0, data=encode_text({"A": "b"})),
    TextRequest(itt=4, cmdsn=8, data=b"SendTargets=All\0"),
    Reject(reason=9, statsn=3, data=bytes(48)),
]


@pytest.mark.parametrize("cls", list(PDU_CLASSES.values()), ids=lambda c: c.__name__)
def test_bhs_declares_exactly_the_dataclass_fields(cls) -> None:
    names = {f.name for f in dataclasses.fields(cls)} - {"data", "ahs"}
    assert pdu_fields(cls) == names


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
@pytest.mark.parametrize("digests", [False, True])
def test_round_trip_through_the_reader_in_fragments(pdu, digests) -> None:
    wire = encode_pdu_bytes(pdu, header_digest=digests, data_digest=digests)
    assert len(wire) % 4 == 0
    reader = PduReader(max_data_segment=8192, header_digest=digests, data_digest=digests, chunk=64)
    got = []
    for i in range(0, len(wire), 5):
        reader.feed(wire[i:i + 5])
        while (p := reader.next_pdu()) is not None:
            got.append(p)
    assert got == [pdu]
    assert reader.buffered == 0


@pytest.mark.parametrize("pdu", SAMPLES, ids=lambda p: type(p).__name__)
def test_compiled_and_interpreted_structs_agree(pdu) -> None:
    header = encode_pdu_bytes(pdu)[:48]
    cls = type(pdu)
    assert cls._FAST.parse(header) == cls._BHS.parse(header)
    assert cls._BHS.build(cls._BHS.parse(header)) == header == cls._FAST.build(cls._FAST.parse(header))


def test_known_bytes_of_a_scsi_command() -> None:
    cmd = ScsiCommand(itt=5, cmdsn=7, read=True, expected_length=36, cdb=bytes([0x12, 0, 0, 0, 36, 0]).ljust(16, b"\0"))
    wire = encode_pdu_bytes(cmd)
    assert wire.hex() == ("01c10000" "00000000" "0000000000000000" "00000005" "00000024" "00000007" "00000000"
                          "1200000024000000" "0000000000000000")
    assert decode_bhs(wire) == cmd


def test_digest_is_crc32c_least_significant_octet_first() -> None:
    # RFC 3720 B.4: 32 octets of zeros
    assert digest(bytes(32)) == bytes.fromhex("aa36918a")
    assert digest(bytes(range(32))) == bytes.fromhex("4e79dd46")


def test_header_digest_mismatch_is_fatal() -> None:
    wire = bytearray(encode_pdu_bytes(SAMPLES[0], header_digest=True))
    wire[10] ^= 1
    reader = PduReader(max_data_segment=8192, header_digest=True)
    reader.feed(wire)
    with pytest.raises(IscsiDecodeError) as err:
        reader.next_pdu()
    assert err.value.iscsi_reason is IscsiReason.HEADER_DIGEST and err.value.fatal


def test_data_digest_mismatch_consumes_the_pdu_and_reading_goes_on() -> None:
    bad = bytearray(encode_pdu_bytes(SAMPLES[0], data_digest=True))
    bad[48] ^= 1
    reader = PduReader(max_data_segment=8192, data_digest=True)
    reader.feed(bytes(bad) + encode_pdu_bytes(SAMPLES[0], data_digest=True))
    with pytest.raises(IscsiDecodeError) as err:
        reader.next_pdu()
    assert err.value.iscsi_reason is IscsiReason.DATA_DIGEST and not err.value.fatal
    assert err.value.header == bytes(bad[:48])
    assert reader.next_pdu() == SAMPLES[0]


def test_oversized_segment_refused_before_it_is_buffered() -> None:
    reader = PduReader(max_data_segment=512)
    reader.feed(encode_pdu_bytes(NopOut(itt=1, data=bytes(1024)))[:48])
    with pytest.raises(IscsiDecodeError) as err:
        reader.next_pdu()
    assert err.value.iscsi_reason is IscsiReason.TOO_LARGE and err.value.fatal


def test_unknown_opcode() -> None:
    with pytest.raises(IscsiDecodeError) as err:
        decode_bhs(bytes([0x1F]) + bytes(47))
    assert err.value.iscsi_reason is IscsiReason.UNKNOWN_OPCODE


def test_ahs_only_on_a_scsi_command() -> None:
    with pytest.raises(IscsiDecodeError):
        decode_bhs(encode_pdu_bytes(SAMPLES[0])[:48], ahs=b"\0\0\0\0")


@pytest.mark.parametrize("raw", [b"a=b", b"=b\0", b"novalue\0", b"k\xff=1\0", b"k=\xff\0"])
def test_malformed_text(raw) -> None:
    with pytest.raises(IscsiDecodeError) as err:
        decode_text(raw)
    assert err.value.iscsi_reason is IscsiReason.BAD_TEXT


def test_text_round_trip() -> None:
    pairs = [("InitiatorName", "iqn.2026-11.org.t10k-lab:host"), ("MaxBurstLength", "262144"), ("X", "")]
    assert decode_text(encode_text(pairs)) == pairs
