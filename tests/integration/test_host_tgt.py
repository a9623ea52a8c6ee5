"""The host side (our initiator, TapeDrive, ``t10k host``) against tgt: a real tape target nobody here wrote.

tgtd runs as a child of the test on a loopback address of its own (the suite runs in a
private network namespace). Its tape is LUN 1. Where tgt falls short of SSC
(REAL-CLIENTS.md: no LOCATE, ERASE, SECURITY PROTOCOL; a stub READ POSITION) the tests
check that we turn its real CHECK CONDITION into the typed error with the parsed sense.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

from host import errors as e
from host.session import open_tape
from host.tape import TapeDrive
from lab.addresses import free_net
from lab.tgt import TgtTape

pytestmark = pytest.mark.network

NET = free_net()  # beside any lab; NET.drive_ip(1) is an address where nothing answers
ADDRESS = NET.drive_ip(0)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tgt(tmp_path: Path) -> Iterator[TgtTape]:
    with TgtTape(tmp_path / "tgt", ADDRESS, size_mib=256) as target:
        yield target


@pytest.fixture
async def tape(tgt: TgtTape) -> AsyncIterator[TapeDrive]:
    async with open_tape(ADDRESS, target=tgt.iqn, lun=tgt.lun) as drive:
        yield drive


def t10k(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"t10k {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


async def test_power_on_unit_attention_then_ready_and_identity(tape: TapeDrive) -> None:
    with pytest.raises(e.UnitAttention) as ua:
        await tape.test_unit_ready()
    assert ua.value.sense.asc == 0x29  # POWER ON, RESET, OR BUS DEVICE RESET OCCURRED
    assert await tape.ready() == []  # consumed: ready now
    inq = await tape.inquiry()
    assert (inq.vendor.strip(), inq.product.strip()) == ("IET", "VIRTUAL-TAPE")
    assert inq.peripheral & 0x1F == 0x01  # a sequential-access device
    limits = await tape.read_block_limits()
    assert limits.max_block_length >= 256 * 1024


async def test_block_size_by_mode_select(tape: TapeDrive) -> None:
    await tape.ready()
    await tape.set_block_size(512)
    assert (await tape.mode_sense()).block_length == 512
    await tape.set_block_size(0)
    assert (await tape.mode_sense()).block_length == 0


async def test_variable_blocks_filemarks_ili_and_end_of_data(tape: TapeDrive) -> None:
    await tape.ready()
    await tape.set_block_size(0)
    await tape.rewind()
    blocks = [os.urandom(n) for n in (1, 1000, 65536, 300_000)]
    assert await tape.write_blocks(blocks, window=4) == 4
    await tape.write_filemarks(1)
    await tape.write(b"second file")
    await tape.write_filemarks(1)
    await tape.rewind()
    assert await tape.read(2000) == blocks[0]  # a shorter block is data (ILI, positive residue)
    assert await tape.read(1000) == blocks[1]  # exactly the length asked for
    with pytest.raises(e.IncorrectLength) as long:
        await tape.read(1000)  # 65536 on tape: ILI with a negative residue
    assert long.value.sense.ili and long.value.sense.information == 1000 - 65536
    assert [b async for b in tape.read_blocks(1, max_length=300_000)] == [blocks[3]]
    with pytest.raises(e.FilemarkDetected) as fm:
        await tape.read(1000)
    assert fm.value.sense.filemark
    assert await tape.read(100) == b"second file"
    await tape.rewind()
    await tape.space_filemarks(1)
    assert await tape.read(100) == b"second file"
    await tape.rewind()
    await tape.space_blocks(2)
    assert await tape.read(300_000) == blocks[2]
    await tape.rewind()
    await tape.space_end_of_data()
    with pytest.raises(e.EndOfData) as eod:
        await tape.read(100)
    # BLANK CHECK; tgt leaves the ASCQ 00h where SSC-3 says 00h/05h END-OF-DATA DETECTED
    assert (int(eod.value.sense.sense_key), eod.value.sense.asc, eod.value.sense.ascq) == (0x8, 0x00, 0x00)


async def test_real_tgt_refusals_become_typed_errors(tape: TapeDrive) -> None:
    await tape.ready()
    with pytest.raises(e.IllegalRequest) as spin:
        await tape.encryption_status()  # tgt has no SECURITY PROTOCOL IN
    assert spin.value.sense.asc == 0x20  # INVALID COMMAND OPERATION CODE
    assert "5/2000" in str(spin.value)
    with pytest.raises(e.IllegalRequest):
        await tape.locate(3)  # nor LOCATE
    sense = await tape.request_sense()
    assert int(sense.sense_key) in (0x0, 0x5)


async def test_status_says_what_tgt_does_not_support(tape: TapeDrive) -> None:
    status = await tape.status()
    assert status["loaded"] is True and status["product"].strip() == "VIRTUAL-TAPE"
    assert "not supported" in str(status["encryption"])


def test_backup_list_restore_verify_round_trip_through_the_cli(tgt: TgtTape, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {"small.txt": b"hello tape\n", "big.bin": os.urandom(3 * 256 * 1024 + 12345), "empty": b""}
    for name, data in files.items():
        (src / name).write_bytes(data)
    at = ["--ip", ADDRESS, "--target", tgt.iqn, "--lun", str(tgt.lun)]
    backed = t10k("host", "backup", *at, "--progress", *(str(src / n) for n in files))
    assert "MB/s" in backed.stderr  # the progress bar
    listed = json.loads(t10k("host", "list", *at, "--json").stdout)
    assert [(f["file"], f["name"], f["size"]) for f in listed] == [(i, n, len(d)) for i, (n, d) in
                                                                    enumerate(files.items())]
    t10k("host", "restore", *at, "--out", str(tmp_path / "out"), "--no-progress")
    assert {n: (tmp_path / "out" / n).read_bytes() for n in files} == files
    verified = json.loads(t10k("host", "verify", *at, "--json", *(str(src / n) for n in files)).stdout)
    assert [v["ok"] for v in verified] == [True, True, True]
    (src / "small.txt").write_bytes(b"changed since the backup")
    bad = t10k("host", "verify", *at, str(src / "small.txt"), check=False)
    assert bad.returncode == 1 and "BAD file 0: small.txt" in bad.stdout
    appended = json.loads(t10k("host", "backup", *at, "--append", "--json", str(src / "small.txt")).stdout)
    assert appended[0]["file"] == 3
    one = t10k("host", "restore", *at, "--file", "3", "--out", str(tmp_path / "again"), "--json")
    assert json.loads(one.stdout)[0]["name"] == "small.txt"
    assert (tmp_path / "again" / "small.txt").read_bytes() == b"changed since the backup"
    missing = t10k("host", "restore", *at, "--file", "9", "--out", str(tmp_path / "x"), check=False)
    assert missing.returncode == 1 and "fewer than 10 files" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    status = json.loads(t10k("host", "status", *at, "--json").stdout)
    assert status["loaded"] is True and status["block_size"] == "variable"


def test_discovery_finds_the_target_without_naming_it(tgt: TgtTape, tmp_path: Path) -> None:
    listed = t10k("host", "list", "--ip", ADDRESS, "--lun", str(tgt.lun), "--json")
    assert json.loads(listed.stdout) == []  # a blank tape


@pytest.mark.parametrize(("args", "code", "message"), [
    (["host", "list", "--ip", NET.drive_ip(1), "--json"], 1, "cannot log in"),
    (["host", "backup", "--ip", ADDRESS, "--block-size", "0", "x"], 2, "a block is 1.."),
    (["host", "list"], 2, "--ip"),
    (["host", "backup", "--ip", ADDRESS, "/nonexistent/file"], 1, "is not a readable file"),
])
def test_errors_are_one_line_and_bad_arguments_exit_2(tgt: TgtTape, args: list[str], code: int,
                                                      message: str) -> None:
    result = t10k(*args, check=False)
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_chap_against_tgt(tmp_path: Path) -> None:
    secret = tmp_path / "chap.secret"
    secret.write_text("a-secret-of-16ch\n")
    with TgtTape(tmp_path / "tgt", ADDRESS, size_mib=64, chap=("backup", "a-secret-of-16ch")) as tgt:
        at = ["--ip", ADDRESS, "--target", tgt.iqn, "--lun", str(tgt.lun)]
        assert json.loads(t10k("host", "list", *at, "--chap-user", "backup", "--chap-secret-file", str(secret),
                               "--json").stdout) == []
        refused = t10k("host", "list", *at, check=False)
        assert refused.returncode == 1 and "cannot log in" in refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        half = t10k("host", "list", *at, "--chap-user", "backup", check=False)
        assert half.returncode == 2 and "--chap-secret-file" in half.stderr
