"""``t10k pcap decode`` shows every field's real value: no placeholders."""

from __future__ import annotations

import json

import protocol as p
from protocol.constants import ErrorCode, TokenMode
from protocol.csn_filter import CsnFilter
from protocol.describe import describe, render

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
