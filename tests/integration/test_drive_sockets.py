"""Issue 11: a drive host's file descriptors do not grow with its drives (shared sockets),
and every drive still lives at its own address on the wire: tokens hear each drive's
requests from the drive's address, replies reach the right drive, VOP and iSCSI answer as
the drive whose address was dialled, and an address with no drive gets nothing.

Shared sockets bind wildcard ports: each test here runs in a network namespace of its own
(the ``netns`` mark, tests/integration/conftest.py).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from pathlib import Path

import pytest

from drive_daemon.errors import BindError
from drive_daemon.service import DriveHost, DriveHostConfig
from drive_daemon.sockets import SocketMode
from drive_daemon.vop import vop_status
from host.iscsi_client import IscsiClient, IscsiClientError, discover
from lab.cluster import Lab, LabPlan
from protocol import decode, scsi
from protocol.constants import DRIVE_PORT, ISCSI_PORT, TOKEN_LAN_PORT, VOP_PORT, MessageType, ScsiStatus, drive_iqn
from protocol.manufacturing import make_drives
from tests.integration.conftest import Wire
from tests.integration.root import needs_root

pytestmark = [pytest.mark.network, pytest.mark.netns, needs_root]

FIRST = ipaddress.IPv4Address("127.20.0.1")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _serving_fds(tmp_path: Path, count: int, mode: SocketMode) -> int:
    drives = [(m, str(FIRST + i)) for i, m in enumerate(make_drives(count))]
    config = DriveHostConfig(tmp_path / f"{mode.value}-{count}", lan_port=17010, sockets=mode)
    async with DriveHost(config, drives) as host:
        assert host.socket_mode is mode
        return _fds()


async def test_descriptors_do_not_grow_with_drives_and_ten_thousand_start(tmp_path: Path) -> None:
    at_10 = await _serving_fds(tmp_path, 10, SocketMode.SHARED)
    at_1000 = await _serving_fds(tmp_path, 1000, SocketMode.SHARED)
    at_10000 = await _serving_fds(tmp_path, 10_000, SocketMode.SHARED)  # 30,000 descriptors per-drive
    assert at_10 == at_1000 == at_10000
    per_drive = await _serving_fds(tmp_path, 1000, SocketMode.PER_DRIVE)
    assert per_drive >= at_10 + 3 * 990  # what shared mode saves


async def test_a_pool_keyed_over_shared_sockets_speaks_from_each_drive_address(tmp_path: Path) -> None:
    wire = Wire()
    plan = LabPlan(drive_count=300, token_names=("token-A",), sockets=SocketMode.SHARED, announce_interval_s=0.3)
    async with Lab(tmp_path / "lab", plan, tap=wire) as lab:
        assert lab.drives.socket_mode is SocketMode.SHARED
        await lab.arm()  # EKT to all (amber), then OKT (red, its timestamp): replies reached each drive
        ips = set(lab.drive_ips.values())
        token_ip = lab.token_ips["token-A"]
        # what the token's socket says it received (recvfrom), per request type and source
        heard: dict[MessageType, set[tuple[str, int]]] = {}
        for direction, transport, src, dst, data in wire.records:
            if direction == "in" and transport == "udp" and dst == (token_ip, TOKEN_LAN_PORT):
                heard.setdefault(decode(data).message.TYPE, set()).add(src)
        assert heard[MessageType.KEY_REQUEST] == {(ip, DRIVE_PORT) for ip in ips}
        assert heard[MessageType.KEY_ACK] == {(ip, DRIVE_PORT) for ip in ips}
        # the drives' own tap: every datagram sent from and received at a drive's address
        drive_side = [(src, dst) for direction, transport, src, dst, _ in wire.records
                      if transport == "udp" and (src[1] == DRIVE_PORT or dst[1] == DRIVE_PORT)]
        assert {src[0] for src, dst in drive_side if src[1] == DRIVE_PORT} == ips
        assert {dst[0] for src, dst in drive_side if dst[1] == DRIVE_PORT} == ips
        assert not lab.drives.counters.unrouted


async def test_vop_and_iscsi_answer_as_the_drive_dialled(tmp_path: Path) -> None:
    plan = LabPlan(drive_count=4, token_names=("token-A",), sockets=SocketMode.SHARED)
    async with Lab(tmp_path / "lab", plan) as lab:
        for name, ip in lab.drive_ips.items():
            assert (await vop_status(ip)).csn == lab.drive_csns[name]
        (x, y) = lab.drive_names[:2]
        x_ip, x_iqn, y_iqn = lab.drive_ips[x], drive_iqn(lab.drive_csns[x]), drive_iqn(lab.drive_csns[y])
        assert await discover(x_ip) == [(x_iqn, f"{x_ip}:{ISCSI_PORT},1")]
        async with IscsiClient(x_ip, target=x_iqn) as client:
            reply = await client.execute(scsi.TestUnitReady().build())
            assert reply.status in (ScsiStatus.GOOD, ScsiStatus.CHECK_CONDITION)
            x_portal = lab.drives.drives[lab.drive_csns[x]].iscsi
            assert x_portal is not None and len(x_portal.sessions) == 1
            assert all(not h.iscsi.sessions for csn, h in lab.drives.drives.items()
                       if csn != lab.drive_csns[x] and h.iscsi is not None)
        with pytest.raises(IscsiClientError):  # drive Y's target is not at drive X's address
            async with IscsiClient(x_ip, target=y_iqn, timeout=3):
                pass


async def _closed_at_once(ip: str, port: int) -> bool:
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        return await asyncio.wait_for(reader.read(1), 2) == b""
    except ConnectionError:
        return True
    finally:
        writer.close()


async def test_an_address_with_no_drive_gets_nothing_and_is_counted(tmp_path: Path) -> None:
    plan = LabPlan(drive_count=2, token_names=("token-A",), sockets=SocketMode.SHARED)
    async with Lab(tmp_path / "lab", plan) as lab:
        nobody = lab.net.drive_ip(40)
        counted, heard = lab.drives.counters.unrouted, lab.drives.counters.datagrams_in
        assert await _closed_at_once(nobody, VOP_PORT)
        assert await _closed_at_once(nobody, ISCSI_PORT)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.sendto(b"not for any drive", (nobody, DRIVE_PORT))
        deadline = time.monotonic() + 2
        while counted["udp"] < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert dict(counted) == {"vop": 1, "iscsi": 1, "udp": 1}
        assert lab.drives.counters.datagrams_in == heard  # no drive took it
        assert (await lab.vop(lab.drive_names[0])).csn == lab.drive_csns[lab.drive_names[0]]  # the others serve


@pytest.mark.parametrize(("transport", "port"), [("udp", DRIVE_PORT), ("tcp", VOP_PORT), ("tcp", ISCSI_PORT)])
async def test_a_wildcard_bind_never_takes_a_port_another_holds(tmp_path: Path, transport: str, port: int) -> None:
    """Another process (here: this one) holds the port on one address: shared mode refuses to
    start and says who and what to do; per-drive mode starts beside it."""
    holder = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
    holder.bind(("127.0.0.77", port))
    if transport == "tcp":
        holder.listen()
    drives = [(m, str(FIRST + i)) for i, m in enumerate(make_drives(2))]
    try:
        shared = DriveHost(DriveHostConfig(tmp_path / "a", lan_port=17010, sockets=SocketMode.SHARED), drives)
        with pytest.raises(BindError) as refused:
            await shared.start()
        text = str(refused.value)
        assert f"0.0.0.0:{port}/{transport}" in text and f"127.0.0.77:{port} by this process" in text
        assert "--sockets per-drive" in text and "namespace" in text
        async with DriveHost(DriveHostConfig(tmp_path / "b", lan_port=17010, sockets=SocketMode.PER_DRIVE), drives):
            pass
    finally:
        holder.close()
