"""``t10k pcap decode`` shows every field's real value: no placeholders."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import protocol as p
from protocol.constants import ErrorCode, TokenMode
from protocol.csn_filter import CsnFilter
from protocol.describe import _describe, describe, render
from tests.vectors import sample_messages

CSNS = [bytes.fromhex(f"57000000000000{i:02x}") for i in range(8)]


def test_a_csn_filter_shows_its_size_hashes_and_bits() -> None:
    f = CsnFilter.of(CSNS)
    fields = describe(p.KeysAvailable(b"\x01" * 8, TokenMode.OKT, 1_800_000_000_000_000, 8, f, b"\x5a" * 64))
    shown = fields["csn_filter"]
    assert shown == {"bits": 8 * len(f.bits), "hash_count": f.hash_count,
                     "bits_set": sum(bin(b).count("1") for b in f.bits), "bits_hex": f.bits.hex()}
    assert fields["timestamp"] == "2027-01-15T08:00:00.000000Z" and fields["token_id"] == "01" * 8
    summary, more = render(fields)
    assert "csn_count=8" in summary and "CsnFilter" not in summary + "".join(more)
    assert more == [f"    csn_filter: bits={shown['bits']} hash_count={f.hash_count} bits_set={shown['bits_set']} "
                    f"bits_hex={f.bits.hex()}"]


def test_lists_show_each_entry_and_octets_as_hex() -> None:
    errors = tuple(p.TokenError(c, ErrorCode.MISSING_KEY, bytes.fromhex("0a0b0c0d00000063"), 1_800_000_000_000_000)
                   for c in CSNS[:2])
    status = p.TokenStatus(b"\x02" * 8, TokenMode.OKT, p.constants.TokenLed.SOLID_GREEN, p.constants.TokenLed.OFF,
                           1_800_000_000_000_000, "pool-1", 8, 0, 8, errors)
    fields = describe(status)
    assert fields["errors"] == [{"csn": c.hex(), "error_code": "00006109 (MISSING_KEY)", "key_id": "0a0b0c0d00000063",
                                 "reported_at": "2027-01-15T08:00:00.000000Z"} for c in CSNS[:2]]
    json.dumps(fields)  # JSON-ready as it is
    _, more = render(fields)
    assert more[0].startswith("    errors[0]: csn=5700000000000000 error_code=00006109 (MISSING_KEY)")
    assert not any("item(s)" in line for line in more)


def test_pcap_decode_shows_a_sealed_body_by_its_size_and_opens_it_with_the_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main
    from protocol.pcap import CaptureWriter

    secret = bytes(range(32))
    announcement = p.Announcement(0, p.CsnFilter.of([]), bytes(64))
    frame = p.encode_authenticated(p.WriteOkt("pool-zz", 1_800_000_000_000_000, (), announcement), secret=secret,
                                   counter=77)
    with CaptureWriter(tmp_path / "c.pcap") as cap:
        cap.write("tcp", ("127.0.0.1", 40000), ("127.0.0.21", 7020), frame)
    assert main(["pcap", "decode", str(tmp_path / "c.pcap"), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    sealed = len(frame) - 16 - 20
    assert row["message"] == "WRITE_OKT" and row["fields"] == {"body": f"sealed, {sealed} octets", "counter": 77}
    (tmp_path / "s").write_text(secret.hex() + "\n")
    assert main(["pcap", "decode", str(tmp_path / "c.pcap"), "--secret-file", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "pool=pool-zz" in out and "counter=77" in out and "sealed" not in out


# --- the describers compiled per class are the rules, read field by field ---------------------

SAMPLES = sample_messages()


def _records(value: object) -> list[object]:
    """A message and every dataclass inside it (nested records, list entries)."""
    if isinstance(value, (tuple, list)):
        return [r for item in value for r in _records(item)]
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return []
    return [value] + [r for f in dataclasses.fields(value) for r in _records(getattr(value, f.name))]


@pytest.mark.parametrize("message_type", sorted(SAMPLES, key=int), ids=lambda t: t.name)
def test_the_compiled_describer_gives_what_the_rules_give(message_type: p.constants.MessageType) -> None:
    for record in _records(SAMPLES[message_type]):
        fast, slow = describe(record), _describe(record)
        assert fast == slow and list(fast) == list(slow) and json.dumps(fast) == json.dumps(slow)


ODD_VALUES = [True, False, 0, 1, 2**64 + 5, 1_800_000_000_000_000, -3, b"", b"\x01\xff", bytearray(b"\x02"),
              memoryview(b"\x03\x04"), "text", "", 1.5, None, (), (1, 2), [b"\x05"], ErrorCode.MISSING_KEY,
              TokenMode.OKT, p.constants.HeaderFlag.REPLY | p.constants.HeaderFlag.AUTHENTICATED,
              CsnFilter.of(CSNS), p.WrappedReceipt(b"\x11" * 12, b"\x22" * 32),
              (p.WrappedReceipt(b"\x11" * 12, b"\x22" * 32), b"\x06", 7)]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.sampled_from(sorted(SAMPLES, key=int)), st.data())
def test_a_value_of_another_type_than_declared_is_described_by_the_rules(
        message_type: p.constants.MessageType, data: st.DataObject) -> None:
    """Values a dataclass does not check (forced in here) take the rules' path, not a wrong fast one."""
    records = [r for r in _records(SAMPLES[message_type]) if dataclasses.fields(r)]  # type: ignore[arg-type]
    if not records:
        return
    record = copy.copy(data.draw(st.sampled_from(records)))
    for _ in range(data.draw(st.integers(1, 3))):
        field = data.draw(st.sampled_from(dataclasses.fields(record)))  # type: ignore[arg-type]
        object.__setattr__(record, field.name, data.draw(st.sampled_from(ODD_VALUES)))
    try:
        slow: object = _describe(record)
    except Exception as exc:  # noqa: BLE001 - whatever the rules raise, the compiled code raises too
        with pytest.raises(type(exc)):
            describe(record)
        return
    fast = describe(record)
    assert fast == slow and json.dumps(fast, default=repr) == json.dumps(slow, default=repr)
