"""Operator cartridge loading over the VOP, on real sockets: the VOP messages, the drive's
handler and `t10k tape load|unload`; a load raises "medium may have changed" on the SCSI LUN."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import pytest

from drive_daemon.cartridge import Cartridge
from drive_daemon.ssc import SscDevice
from drive_daemon.vop import vop_load, vop_unload
from lab.cluster import Lab
from protocol import scsi
from protocol.constants import ScsiStatus, VopStatusCode
from tests.integration.conftest import BOTH_SOCKET_MODES, enrol_and_arm

pytestmark = pytest.mark.network
NEXUS = "iqn.2026-11.org.t10k-lab:host,i,0x1"


@BOTH_SOCKET_MODES
async def test_vop_load_and_unload(lab: Lab) -> None:
    await enrol_and_arm(lab)
    drive = lab.net.drive_ip(0)  # the lab's free addresses: beside any other lab
    Cartridge.create(lab.library, "OPS001")
    hosted = next(iter(lab.drives.drives.values()))
    device = SscDevice(hosted.tape)
    run = lambda cdb: device.execute(NEXUS, cdb.build(), None, 0.0)  # noqa: E731
    assert run(scsi.TestUnitReady()).status == ScsiStatus.CHECK_CONDITION  # power on
    assert scsi.SenseData.parse(run(scsi.TestUnitReady()).sense).asc == 0x3A  # no cartridge

    result = await vop_load(drive, "OPS001")
    assert (result.status, result.message) == (VopStatusCode.OK, "OPS001 loaded")
    assert scsi.SenseData.parse(run(scsi.TestUnitReady()).sense).asc_ascq == 0x2800  # medium may have changed
    assert run(scsi.TestUnitReady()).status == ScsiStatus.GOOD

    refused = await vop_load(drive, "OPS001")
    assert refused.status == VopStatusCode.REFUSED and "unload it first" in refused.message
    assert (await vop_unload(drive)).message == "OPS001 unloaded"
    assert scsi.SenseData.parse(run(scsi.TestUnitReady()).sense).asc == 0x3A
    assert (await vop_unload(drive)).status == VopStatusCode.REFUSED
    unknown = await vop_load(drive, "NOPE")
    assert unknown.status == VopStatusCode.REFUSED and "no volume NOPE" in unknown.message


async def test_t10k_tape_load_unload_cli(lab: Lab) -> None:
    Cartridge.create(lab.library, "CLI001")
    drive = lab.net.drive_ip(0)

    async def t10k(*args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, PYTHONPATH=os.getcwd())
        return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "lab.cli", *args], capture_output=True,
                                       text=True, timeout=60, env=env)

    done = await t10k("tape", "load", "--ip", drive, "--json", "CLI001")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"ok": True, "status": "OK", "message": "CLI001 loaded"}
    hosted = next(iter(lab.drives.drives.values()))
    assert hosted.tape.cartridge is not None and hosted.tape.cartridge.volser == "CLI001"
    again = await t10k("tape", "load", "--ip", drive, "CLI001")
    assert again.returncode == 1 and "unload it first" in again.stdout
    done = await t10k("tape", "unload", "--ip", drive)
    assert (done.returncode, done.stdout.strip()) == (0, "CLI001 unloaded")
    assert hosted.tape.cartridge is None
