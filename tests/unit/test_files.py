"""Corrupt or wrong files get a clear error; nothing is half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drive_daemon.errors import ManufacturingFileError, NvramError
from drive_daemon.manufacturing import find_drive, read_manufacturing_file, write_manufacturing_file
from drive_daemon.nvram import Nvram, load_nvram, nvram_path, save_nvram
from protocol.manufacturing import make_drives
from token_daemon.errors import MemoryImageError
from token_daemon.memory import IMAGE_NAME, MemoryStore, TokenMemory


@pytest.mark.parametrize(("content", "message"), [
    ("{", "not valid JSON"),
    ("{}", "JSON list"),
    ('[{"csn": "12"}]', "16 hex digits"),
    ('[{"csn": "5700000000000001"}]', "lacks 'pckey'"),
    ('[{"csn": "5700000000000001", "pckey": "' + "0" * 64 + '", "model": "LTO"}]', "unknown model"),
])
def test_bad_manufacturing_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.json"
    path.write_text(content)
    with pytest.raises(ManufacturingFileError, match=message):
        read_manufacturing_file(path)


def test_manufacturing_round_trip_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    drives = make_drives(3)
    write_manufacturing_file(path, drives)
    assert read_manufacturing_file(path) == drives
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with pytest.raises(ManufacturingFileError, match="say which with --csn"):
        find_drive(drives, None, path)
    with pytest.raises(ManufacturingFileError, match="no drive with CSN"):
        find_drive(drives, b"\x00" * 8, path)


def test_nvram_of_another_drive_or_corrupt_is_refused(tmp_path: Path) -> None:
    a, b = make_drives(2)
    save_nvram(tmp_path, a.csn, a.pckey, Nvram(os.urandom(32), b"\x01" * 8, 5, 6))
    assert load_nvram(tmp_path, a.csn, a.pckey).okt_timestamp == 6
    with pytest.raises(NvramError, match="move it aside"):
        load_nvram(tmp_path, a.csn, b.pckey)  # cannot unseal under another PCkey
    nvram_path(tmp_path, a.csn).write_text("{not json")
    with pytest.raises(NvramError, match="cannot be used"):
        load_nvram(tmp_path, a.csn, a.pckey)


def test_token_state_corruption_is_reported(tmp_path: Path) -> None:
    MemoryStore(tmp_path, bytes(32)).save(TokenMemory.blank())
    image = json.loads((tmp_path / IMAGE_NAME).read_text())
    image["errors"] = [{"csn": "zz"}]
    (tmp_path / IMAGE_NAME).write_text(json.dumps(image))
    with pytest.raises(MemoryImageError, match="corrupt"):
        MemoryStore(tmp_path, bytes(32)).load()


def test_saves_leave_no_temporary_file(tmp_path: Path) -> None:
    MemoryStore(tmp_path, bytes(32)).save(TokenMemory.blank())
    a = make_drives(1)[0]
    save_nvram(tmp_path, a.csn, a.pckey, Nvram())
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json"]
