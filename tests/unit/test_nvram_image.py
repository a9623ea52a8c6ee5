"""A drive's NVRAM image: kept between writes but for okt_timestamp (issue 11), yet always the
octets json.dumps makes of the fields, and read back to the same NVRAM."""

from __future__ import annotations

import dataclasses
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from drive_daemon.nvram import Nvram, decode_nvram, encode_nvram
from protocol.manufacturing import make_drives

MADE = make_drives(2)
KEYS = st.sampled_from([None, b"\x11" * 32, b"\x22" * 32])
CHANGES = st.lists(st.tuples(
    st.sampled_from(["device_key", "device_key_id", "device_key_timestamp", "okt_timestamp", "reset", "kms_public_key",
                     "drive"]),
    st.integers(min_value=0, max_value=2**64 - 1), KEYS, st.booleans()), max_size=12)


@settings(max_examples=60, deadline=None)
@given(CHANGES)
def test_each_image_is_json_of_the_fields_and_reads_back(changes: list[tuple[str, int, bytes | None, bool]]) -> None:
    nvram, made = Nvram(), MADE[0]
    for what, number, key, flag in changes:
        if what == "device_key":
            nvram.device_key = key
        elif what == "device_key_id":
            nvram.device_key_id = number.to_bytes(8, "big")
        elif what == "kms_public_key":
            nvram.kms_public_key = key
        elif what == "reset":
            nvram.reset = flag
        elif what == "drive":
            made = MADE[number % 2]  # the same NVRAM object under another CSN and PCkey
        else:
            setattr(nvram, what, number)
        image = encode_nvram(made.csn, made.pckey, nvram)
        assert image == json.dumps(nvram.to_json(made.csn, made.pckey)).encode()
        read = decode_nvram(image, made.csn, made.pckey)
        # the KMS public key is sealed with the device key: without one, it is not kept
        assert read == (nvram if nvram.device_key is not None else dataclasses.replace(nvram, kms_public_key=None))
