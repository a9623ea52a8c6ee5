"""Cartridge files: tape semantics, crash safety, integrity, locking."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drive_daemon.cartridge import (
    Cartridge,
    CartridgeError,
    CorruptRecord,
    RecordKind,
    UnknownVolume,
    VolumeInUse,
    list_library,
)
from tests.site import arm, make_site
from tests.tapesite import Deck, new_tape


def test_writing_truncates_everything_after_the_position(tmp_path: Path) -> None:
    Cartridge.create(tmp_path, "T")
    tape = Cartridge.load(tmp_path, "T")
    for i in range(5):
        tape.append(RecordKind.PLAIN, [bytes([i]) * 10])
    tape.truncate(2)
    tape.append(RecordKind.FILEMARK, [])
    tape.close()
    tape = Cartridge.load(tmp_path, "T")
    assert [r.kind for r in tape.records] == [RecordKind.PLAIN, RecordKind.PLAIN, RecordKind.FILEMARK]
    assert tape.read_payload(1) == bytes([1]) * 10
    tape.close()


def test_a_torn_last_record_is_cut_at_load(tmp_path: Path) -> None:
    Cartridge.create(tmp_path, "T")
    tape = Cartridge.load(tmp_path, "T")
    tape.append(RecordKind.PLAIN, [b"a" * 1000])
    tape.append(RecordKind.PLAIN, [b"b" * 1000])
    tape.close()
    path = tmp_path / "T.tape"
    whole = path.read_bytes()
    for cut in (1, 500, 1019):  # inside the payload, inside the header
        path.write_bytes(whole[:-cut])
        torn = Cartridge.load(tmp_path, "T")
        assert len(torn) == 1 and torn.read_payload(0) == b"a" * 1000
        torn.close()
        assert path.stat().st_size == len(whole) - 1020  # cut back to the last whole record


def test_a_flipped_bit_in_a_whole_last_record_is_cut_too(tmp_path: Path) -> None:
    Cartridge.create(tmp_path, "T")
    tape = Cartridge.load(tmp_path, "T")
    tape.append(RecordKind.PLAIN, [b"a" * 100])
    tape.append(RecordKind.PLAIN, [b"b" * 100])
    tape.close()
    data = bytearray((tmp_path / "T.tape").read_bytes())
    data[-5] ^= 1
    (tmp_path / "T.tape").write_bytes(bytes(data))
    tape = Cartridge.load(tmp_path, "T")
    assert len(tape) == 1
    tape.close()


def test_corruption_inside_the_tape_is_a_medium_error_on_read(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    arm(site)
    library = tmp_path / "lib"
    deck = Deck(site, site.ip(0), library)
    deck("load", new_tape(library, "ROT"))
    deck.write_file(b"one" * 100, b"two" * 100)
    deck("unload")
    path = library / "ROT.tape"
    data = bytearray(path.read_bytes())
    data[60] ^= 0x40  # inside the first block's ciphertext
    path.write_bytes(bytes(data))
    deck("load", "ROT")
    assert deck.sense("read_block", max_length=1 << 20) == "3/1100/0000"
    assert deck.sense("read_block", max_length=1 << 20) == "3/1100/0000"  # position unchanged: it did not skip
    deck.session.position = 1
    assert deck("read_block", max_length=1 << 20) == b"two" * 100


def test_encrypted_blocks_keep_the_key_id_in_the_clear_and_nothing_else(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    key_id = arm(site)
    library = tmp_path / "lib"
    deck = Deck(site, site.ip(0), library)
    deck("load", new_tape(library, "ENC"))
    plaintext = b"the payroll of 2007 " * 500
    deck.write_file(plaintext)
    deck("unload")
    raw = (library / "ENC.tape").read_bytes()
    assert key_id in raw and b"payroll" not in raw and site.kms.key_value(key_id) not in raw


def test_one_drive_at_a_time_and_clear_errors(tmp_path: Path) -> None:
    Cartridge.create(tmp_path, "T")
    with pytest.raises(CartridgeError, match="already exists"):
        Cartridge.create(tmp_path, "T")
    first = Cartridge.load(tmp_path, "T")
    with pytest.raises(VolumeInUse):
        Cartridge.load(tmp_path, "T")
    first.close()
    Cartridge.load(tmp_path, "T").close()
    with pytest.raises(UnknownVolume, match="no volume X"):
        Cartridge.load(tmp_path, "X")
    with pytest.raises(UnknownVolume, match="not a volume serial"):
        Cartridge.load(tmp_path, "../etc/passwd")
    (tmp_path / "BAD.tape").write_bytes(os.urandom(64))
    with pytest.raises(CorruptRecord, match="not a t10k cartridge"):
        Cartridge.load(tmp_path, "BAD")
    assert list_library(tmp_path) == ["BAD", "T"]
