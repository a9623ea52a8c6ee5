"""libiscsi's ``iscsi-ls`` and ``iscsi-inq`` (software nobody here wrote) against a live drive (issue 9).

The drive is ``t10k drive run`` as its own process, on free addresses (beside any lab), its
cartridge loaded by ``t10k tape load``; the values asserted are docs/SCSI.md's Identity.
Needs the Debian package libiscsi-bin.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from lab.addresses import free_net
from protocol.constants import drive_iqn

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
T10K = [sys.executable, "-m", "lab.cli"]
NET = free_net()
IP = NET.drive_ip(0)
CSN = bytes.fromhex("570000000000a1b2")


def run(*args: str) -> str:
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"{' '.join(args)} exited {result.returncode}: {result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def drive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A T10000A drive process serving its iSCSI target at IP, cartridge RC0001 loaded; its iSCSI URL."""
    tmp = tmp_path_factory.mktemp("drive")
    made, library = tmp / "made.json", tmp / "library"
    run(*T10K, "drive", "manufacture", "--count", "1", "--out", str(made), "--first-csn", CSN.hex(),
        "--model", "T10000A")
    run(*T10K, "tape", "new", "--library", str(library), "RC0001")
    proc = subprocess.Popen([*T10K, "drive", "run", "--ip", IP, "--manufacturing", str(made), "--state",
                             str(tmp / "state"), "--library", str(library), "--drive-lan-port", str(NET.lan_port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        assert "serving" in line, f"the drive did not start: {line} {proc.stderr.read()}"
        assert run(*T10K, "tape", "load", "--ip", IP, "RC0001").strip() == "RC0001 loaded"
        yield f"iscsi://{IP}/{drive_iqn(CSN)}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_iscsi_ls_finds_the_drive_target_and_its_tape_lun(drive: str) -> None:
    listing = run("iscsi-ls", "-s", f"iscsi://{IP}")
    assert listing.splitlines() == [
        f"Target:{drive_iqn(CSN)} Portal:{IP}:3260,1",
        "Lun:0    Type:SEQUENTIAL_ACCESS",
    ], listing


def test_iscsi_inq_standard_inquiry(drive: str) -> None:
    standard = run("iscsi-inq", drive)
    assert standard.splitlines() == [
        "Peripheral Qualifier:CONNECTED", "Peripheral Device Type:SEQUENTIAL_ACCESS", "Removable:1",
        "Version:5 ANSI INCITS 408-2005 (SPC-3)", "NormACA:0", "HiSup:0", "ReponseDataFormat:2", "SCCS:0", "ACC:0",
        "TPGS:0", "3PC:0", "Protect:0", "EncServ:0", "MultiP:0", "SYNC:0", "CmdQue:0",
        "Vendor:STK     ", "Product:T10000A         ", "Revision:1.42",
        "Version Descriptor:0060 unknown",  # SAM-3, which libiscsi does not name
        "Version Descriptor:0300 SPC-3",
        "Version Descriptor:0400 unknown",  # SSC-3
        "Version Descriptor:0960 iSCSI",
    ], standard


def test_iscsi_inq_vital_product_data(drive: str) -> None:
    pages = run("iscsi-inq", "-e", "1", "-c", "0", drive)
    assert pages.splitlines() == [  # libiscsi names page B0h as SBC's; on a tape it is SSC's device capabilities
        "Page:0x00 SUPPORTED_VPD_PAGES", "Page:0x80 UNIT_SERIAL_NUMBER", "Page:0x83 DEVICE_IDENTIFICATION",
        "Page:0xb0 BLOCK_LIMITS"], pages
    serial = run("iscsi-inq", "-e", "1", "-c", "128", drive)
    assert serial.splitlines() == [f"Unit Serial Number:[{CSN.hex().upper()}]"], serial  # the CSN, 16 hex digits
    ident = run("iscsi-inq", "-e", "1", "-c", "131", drive)
    # libiscsi lists the designators last first, and prints the binary EUI-64 as a C string: the CSN's
    # first octet 57h ('W'), then its 00h ends it
    assert ident.splitlines() == [
        "Peripheral Qualifier:CONNECTED", "Peripheral Device Type:SEQUENTIAL_ACCESS",
        "Page Code:(0x83) DEVICE_IDENTIFICATION",
        "DEVICE DESIGNATOR #0", "Code Set:(1) BINARY", "PIV:0", "Association:(0) LOGICAL_UNIT",
        "Designator Type:(2) EUI_64", "Designator:[W]",
        "DEVICE DESIGNATOR #1", "Code Set:(2) ASCII", "PIV:0", "Association:(0) LOGICAL_UNIT",
        "Designator Type:(1) T10_VENDORT_ID", f"Designator:[STK     T10000A         {CSN.hex().upper()}]",
    ], ident
