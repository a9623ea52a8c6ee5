"""Real iSCSI software nobody here wrote: libiscsi's tools against our portal, and our
initiator against tgt's SSC tape LUN (REAL-CLIENTS.md). Needs the Debian packages
libiscsi-bin and tgt."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from drive_daemon.iscsi import IscsiConfig, IscsiPortal
from host.iscsi_client import IscsiClient, discover
from lab.addresses import free_net
from lab.tgt import FAST_SESSION, TgtTape
from tests.iscsi_lun import MemoryTapeLun
from tests.unit.iscsi.pair import TARGET

pytestmark = pytest.mark.network

IP = free_net().drive_ip(0)  # beside any lab, the README's daemons included


async def run(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}: {text}"
    return text


async def test_iscsi_ls_and_iscsi_inq_see_a_tape() -> None:
    lun = MemoryTapeLun(serial="HU1234ABCD")
    async with IscsiPortal(IscsiConfig(target_name=TARGET), lun, host=IP) as portal:
        listing = await run("iscsi-ls", "-s", f"iscsi://{IP}")
        assert f"Target:{TARGET} Portal:{IP}:3260,1" in listing
        assert "Lun:0    Type:SEQUENTIAL_ACCESS" in listing
        url = f"iscsi://{IP}/{TARGET}/0"
        standard = await run("iscsi-inq", url)
        assert "Peripheral Device Type:SEQUENTIAL_ACCESS" in standard
        assert "Vendor:STK" in standard and "Product:T10000B" in standard and "Removable:1" in standard
        pages = await run("iscsi-inq", "-e", "1", "-c", "0", url)
        assert pages.split() == ["Page:0x00", "SUPPORTED_VPD_PAGES", "Page:0x80", "UNIT_SERIAL_NUMBER",
                                 "Page:0x83", "DEVICE_IDENTIFICATION"]
        assert "Unit Serial Number:[HU1234ABCD]" in await run("iscsi-inq", "-e", "1", "-c", "128", url)
        ident = await run("iscsi-inq", "-e", "1", "-c", "131", url)
        assert "Designator:[STK     T10000B HU1234ABCD]" in ident
        # every session began with TEST UNIT READY (the unit attention) and ended with a logout
        assert {call[0].split(",")[0] for call in lun.calls} >= {"iqn.2007-10.com.github:sahlberg:libiscsi:iscsi-inq"}
        await asyncio.sleep(0.05)
        assert not portal.connections and not portal.errors


async def test_libiscsi_chap_right_and_wrong() -> None:
    config = IscsiConfig(target_name=TARGET, chap=("backup", "twelve-chars-secret"))
    async with IscsiPortal(config, MemoryTapeLun(), host=IP) as portal:
        good = await run("iscsi-inq", f"iscsi://backup%twelve-chars-secret@{IP}/{TARGET}/0")
        assert "Peripheral Device Type:SEQUENTIAL_ACCESS" in good
        for url in (f"iscsi://backup%wrong-secret-xxxx@{IP}/{TARGET}/0", f"iscsi://{IP}/{TARGET}/0"):
            proc = await asyncio.create_subprocess_exec("iscsi-inq", url, stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.STDOUT)
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode != 0 and b"Authentication failure" in out
        assert portal.errors["LOGIN_AUTHENTICATION_FAILURE"] == 2


#: tgt's own defaults (InitialR2T=Yes, MaxRecvDataSegmentLength 8192, bursts of 64/256 KiB): R2T flows
TGT_DEFAULTS: dict[str, str] = {"HeaderDigest": "None,CRC32C", "DataDigest": "None,CRC32C"}


@pytest.mark.parametrize("digests,params", [(False, None), (True, None), (False, TGT_DEFAULTS)],
                         ids=["tuned", "tuned-digests", "tgt-defaults"])
async def test_our_initiator_against_tgt_ssc(tmp_path: Path, digests: bool, params: dict[str, str] | None) -> None:
    async with TgtTape(tmp_path / "tgt", IP, port=3261, size_mib=64,
                       session=FAST_SESSION if params is None else params) as tgt:
        target = tgt.iqn
        assert (target, f"{IP}:3261,1") in await discover(IP, 3261)
        async with IscsiClient(IP, 3261, target=target, digests=digests) as client:
            client.lun = tgt.lun
            reply = await client.execute(bytes([0x12, 0, 0, 0, 96, 0]), expected_in=96)
            assert reply.status == 0 and reply.data[0] & 0x1F == 0x01  # a sequential-access device
            assert reply.residual == 96 - len(reply.data)
            first = await client.execute(bytes(6))
            assert first.status == 2 and first.sense[2] & 0xF == 0x6  # tgt's power-on unit attention
            assert (await client.execute(bytes([0x01, 0, 0, 0, 0, 0]))).status == 0  # REWIND
            if params is TGT_DEFAULTS:
                assert client.params.initial_r2t and client.params.target_max_recv == 8192
            blocks = [bytes([i]) * (65536 + 4096 * i) for i in range(6)] + [bytes(range(256)) * 4096]
            for block in blocks:
                cdb = bytes([0x0A, 0]) + len(block).to_bytes(3, "big") + b"\0"
                assert (await client.execute(cdb, data_out=block)).status == 0
            assert (await client.execute(bytes([0x10, 0, 0, 0, 1, 0]))).status == 0  # WRITE FILEMARKS 1
            assert (await client.execute(bytes([0x01, 0, 0, 0, 0, 0]))).status == 0
            for block in blocks:
                cdb = bytes([0x08, 0]) + len(block).to_bytes(3, "big") + b"\0"
                reply = await client.execute(cdb, expected_in=len(block))
                assert (reply.status, reply.data) == (0, block)
            # a read longer than the block: CHECK CONDITION with ILI, the data and the residue
            reply = await client.execute(bytes([0x08, 0, 0x01, 0, 0, 0]), expected_in=65536)
            assert reply.status == 2 and reply.sense[2] & 0x80  # the filemark


async def test_libiscsi_with_header_digests() -> None:
    sent: list[bytes] = []
    config = IscsiConfig(target_name=TARGET, digests="CRC32C")  # libiscsi offers None,CRC32C: we pick CRC32C
    tap = lambda direction, src, dst, data: sent.append(data) if direction == "out" else None  # noqa: E731
    async with IscsiPortal(config, MemoryTapeLun(serial="DIGEST01"), host=IP, tap=tap) as portal:
        assert "Unit Serial Number:[DIGEST01]" in await run("iscsi-inq", "-e", "1", "-c", "128",
                                                            f"iscsi://{IP}/{TARGET}/0")
        assert "Lun:0    Type:SEQUENTIAL_ACCESS" in await run("iscsi-ls", "-s", f"iscsi://{IP}")
        assert not portal.errors
    assert b"HeaderDigest=CRC32C\0" in b"".join(sent)
