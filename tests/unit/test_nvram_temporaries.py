"""A state directory of the old layout (a file per drive) moves into the host's one store.

Hosts before the store wrote drive-CSN.json per drive (through drive-CSN.tmp, renamed). A
host now imports its own drives' files in one durable commit and only then removes them;
the temporaries a kill left in mid-write are removed (issue 13, low). The kill between the
import and the removal is a real SIGKILL of a real process, not a file made by hand.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drive_daemon.errors import NvramError
from drive_daemon.nvram import Nvram, decode_nvram, encode_nvram, legacy_path, temporary_path
from drive_daemon.nvram_store import STORE_NAME, NvramStore
from drive_daemon.service import DriveHost, DriveHostConfig
from protocol.manufacturing import ManufacturedDrive, make_drives, parse_manufacturing, format_manufacturing

ROOT = Path(__file__).resolve().parents[2]


def _nvram(timestamp: int) -> Nvram:
    return Nvram(device_key=os.urandom(32), device_key_id=b"\x00\x00\x00\x05\x00\x00\x00\x01",
                 device_key_timestamp=7, okt_timestamp=timestamp, kms_public_key=os.urandom(32))


def _old_file(state: Path, made: ManufacturedDrive, nvram: Nvram, *, fmt: int = 2) -> None:
    """What a host before the store wrote (format 1: the device key sealed alone, no public key)."""
    if fmt == 1:
        nvram = Nvram(nvram.device_key, nvram.device_key_id, nvram.device_key_timestamp, nvram.okt_timestamp)
    image = nvram.to_json(made.csn, made.pckey) | {"format": fmt}
    legacy_path(state, made.csn).write_text(json.dumps(image))


def _stored(state: Path) -> dict[bytes, bytes]:
    store = NvramStore(state / STORE_NAME)
    try:
        return store.load_all()
    finally:
        store.close()


async def test_a_host_imports_its_drives_files_and_removes_only_its_own(tmp_path: Path) -> None:
    mine, old, other = make_drives(3)
    committed = _nvram(9)
    _old_file(tmp_path, mine, committed)
    _old_file(tmp_path, old, committed, fmt=1)
    _old_file(tmp_path, other, committed)
    for m in (mine, other):  # a kill in mid-write left these (never acknowledged)
        temporary_path(tmp_path, m.csn).write_text('{"half": "an image"}')

    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(mine, "127.0.0.101"), (old, "127.0.0.102")])
    assert host.drives[mine.csn].drive.nvram == committed
    format_1 = host.drives[old.csn].drive.nvram
    assert format_1.device_key == committed.device_key and format_1.kms_public_key is None
    assert not temporary_path(tmp_path, mine.csn).exists()
    assert not legacy_path(tmp_path, mine.csn).exists() and not legacy_path(tmp_path, old.csn).exists()
    # another drive's files belong to the process hosting it (it may be writing them now)
    assert temporary_path(tmp_path, other.csn).exists() and legacy_path(tmp_path, other.csn).exists()
    await host.stop()
    rows = _stored(tmp_path)
    assert set(rows) == {mine.csn, old.csn}
    assert decode_nvram(rows[mine.csn], mine.csn, mine.pckey) == committed

    again = DriveHost(DriveHostConfig(state_dir=tmp_path), [(mine, "127.0.0.101"), (old, "127.0.0.102")])
    assert again.drives[mine.csn].drive.nvram == committed  # from the store now
    await again.stop()


_KILLED_AFTER_THE_IMPORT = textwrap.dedent("""
    import pathlib, sys, time
    from drive_daemon.service import DriveHost, DriveHostConfig
    from protocol.manufacturing import parse_manufacturing
    state, made = pathlib.Path(sys.argv[1]), parse_manufacturing(sys.argv[2])
    unlink = pathlib.Path.unlink
    def stall(self, missing_ok=False):  # the kill lands here: imported and committed, no file removed yet
        if self.suffix != ".json":
            return unlink(self, missing_ok)
        print("stalled", flush=True)
        time.sleep(60)
    pathlib.Path.unlink = stall
    DriveHost(DriveHostConfig(state_dir=state), [(m, "127.0.0.101") for m in made])
""")


async def test_a_kill_between_the_import_and_the_removal_imports_again_harmlessly(tmp_path: Path) -> None:
    made = make_drives(3)
    before = {m.csn: _nvram(10 + i) for i, m in enumerate(made)}
    for m in made:
        _old_file(tmp_path, m, before[m.csn])
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_AFTER_THE_IMPORT, str(tmp_path), format_manufacturing(made)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stalled"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    assert all(legacy_path(tmp_path, m.csn).exists() for m in made)  # both: the files and the rows
    assert {c: decode_nvram(i, c, next(m.pckey for m in made if m.csn == c)) for c, i in _stored(tmp_path).items()
            } == before

    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(m, "127.0.0.101") for m in parse_manufacturing(
        format_manufacturing(made))])
    assert {c: h.drive.nvram for c, h in host.drives.items()} == before
    assert not any(legacy_path(tmp_path, m.csn).exists() for m in made)
    await host.stop()
    assert len(_stored(tmp_path)) == 3


def test_a_damaged_old_file_is_named_and_nothing_moves(tmp_path: Path) -> None:
    good, bad = make_drives(2)
    _old_file(tmp_path, good, _nvram(3))
    legacy_path(tmp_path, bad.csn).write_text(json.dumps(json.loads(encode_nvram(bad.csn, good.pckey, _nvram(4)))))
    with pytest.raises(NvramError, match=f"{legacy_path(tmp_path, bad.csn)} cannot be used.*forget-nvram"):
        DriveHost(DriveHostConfig(state_dir=tmp_path), [(good, "127.0.0.101"), (bad, "127.0.0.102")])
    assert legacy_path(tmp_path, good.csn).exists() and legacy_path(tmp_path, bad.csn).exists()
    assert _stored(tmp_path) == {}
