"""Property tests: whatever bytes arrive, the PDU reader raises only IscsiDecodeError and
the target only answers, rejects or closes (it never raises)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.iscsi import IscsiDecodeError, PduReader, encode_pdu_bytes

from .pair import Pair
from .test_pdu import SAMPLES


def _read_all(data: bytes, digests: bool) -> None:
    reader = PduReader(max_data_segment=8192, header_digest=digests, data_digest=digests)
    reader.feed(data)
    for _ in range(100):
        try:
            if reader.next_pdu() is None:
                return
        except IscsiDecodeError as exc:
            assert exc.iscsi_reason is not None
            if exc.fatal:
                return


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.booleans())
def test_random_bytes_only_raise_decode_errors(data: bytes, digests: bool) -> None:
    _read_all(data, digests)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SAMPLES), st.integers(0, 47), st.integers(0, 255))
def test_mutated_headers_only_raise_decode_errors(pdu, index: int, value: int) -> None:
    wire = bytearray(encode_pdu_bytes(pdu))
    wire[index] = value
    _read_all(bytes(wire), False)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SAMPLES), st.integers(0, 47), st.integers(0, 255)), max_size=6),
       st.booleans())
def test_target_survives_mutated_pdus_after_login(mutations, digests: bool) -> None:
    pair = Pair(digests=digests)
    pair.login()
    for pdu, index, value in mutations:
        wire = bytearray(encode_pdu_bytes(pdu, header_digest=digests, data_digest=digests))
        wire[index] = value
        pair.send_raw(bytes(wire))  # must not raise
        if pair.target.closing:
            break
    pair.target.connection_lost()
