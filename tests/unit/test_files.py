"""Corrupt or wrong files get a clear error; nothing is half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drive_daemon.errors import ManufacturingFileError, NvramError
from drive_daemon.manufacturing import find_drive, read_manufacturing_file, write_manufacturing_file
from drive_daemon.nvram import Nvram, encode_nvram
from drive_daemon.nvram_store import STORE_NAME, NvramStore
from drive_daemon.service import DriveHost, DriveHostConfig
from lab.cli import main
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


def _stored(state: Path, rows: dict[bytes, bytes]) -> None:
    store = NvramStore(state / STORE_NAME)
    store.import_rows(rows)
    store.close()


async def test_nvram_of_another_drive_or_corrupt_is_refused_with_the_way_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, c = make_drives(3)
    kept = Nvram(os.urandom(32), b"\x01" * 8, 5, 6)
    config = DriveHostConfig(state_dir=tmp_path)
    _stored(tmp_path, {a.csn: encode_nvram(a.csn, a.pckey, kept), c.csn: encode_nvram(c.csn, c.pckey, kept)})
    host = DriveHost(config, [(a, "127.0.0.101")])
    assert host.drives[a.csn].drive.nvram == kept
    await host.stop()
    for image, why in ((encode_nvram(a.csn, b.pckey, kept), "did not decrypt"), (b"{not json", "Expecting property")):
        _stored(tmp_path, {a.csn: image})  # sealed under another drive's PCkey; not an image at all
        with pytest.raises(NvramError, match=why) as refused:
            DriveHost(config, [(a, "127.0.0.101"), (c, "127.0.0.102")])
        message = str(refused.value)
        assert str(tmp_path / STORE_NAME) in message and a.csn.hex() in message and c.csn.hex() not in message
        assert f"t10k drive forget-nvram --state {tmp_path} --csn {a.csn.hex()}" in message
    # what the message says, done: the drive starts as from the factory, the others keep theirs
    assert main(["drive", "forget-nvram", "--state", str(tmp_path), "--csn", a.csn.hex()]) == 0
    assert "starts as from the factory" in capsys.readouterr().out
    host = DriveHost(config, [(a, "127.0.0.101"), (c, "127.0.0.102")])
    assert host.drives[a.csn].drive.nvram == Nvram() and host.drives[c.csn].drive.nvram == kept
    await host.stop()
    assert main(["drive", "forget-nvram", "--state", str(tmp_path), "--csn", a.csn.hex()]) == 0
    assert "holds no NVRAM" in capsys.readouterr().out


def test_a_store_that_is_not_sqlite_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = make_drives(1)[0]
    (tmp_path / STORE_NAME).write_bytes(os.urandom(8192))
    with pytest.raises(NvramError, match=f"{tmp_path / STORE_NAME} cannot be opened.*move it aside"):
        DriveHost(DriveHostConfig(state_dir=tmp_path), [(a, "127.0.0.101")])
    assert main(["drive", "forget-nvram", "--state", str(tmp_path), "--csn", a.csn.hex()]) == 1
    assert str(tmp_path / STORE_NAME) in capsys.readouterr().err


def test_token_state_corruption_is_reported(tmp_path: Path) -> None:
    MemoryStore(tmp_path, bytes(32)).save(TokenMemory.blank())
    image = json.loads((tmp_path / IMAGE_NAME).read_text())
    image["errors"] = [{"csn": "zz"}]
    (tmp_path / IMAGE_NAME).write_text(json.dumps(image))
    with pytest.raises(MemoryImageError, match="corrupt"):
        MemoryStore(tmp_path, bytes(32)).load()


def test_saves_leave_no_temporary_file(tmp_path: Path) -> None:
    MemoryStore(tmp_path, bytes(32)).save(TokenMemory.blank())
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json"]
