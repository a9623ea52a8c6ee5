"""Real network stacks: sites in network namespaces on a bridge, real broadcast (root only; CI is root)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path
from typing import AsyncIterator

import pytest

from drive_daemon.vop import vop_status
from kms_client import station
from lab.addresses import free_lan_port
from lab.netlab import NetworkLab
from lab.topology import parse_topology
from protocol.constants import DRIVE_LAN_PORT, EncryptionLed, MessageType
from protocol.pcap import read_capture
from tests.integration.root import needs_root

pytestmark = [pytest.mark.network, needs_root]

TOPOLOGY = parse_topology({"name": "two-subnets", "site": [
    {"name": "east", "drives": 2, "tokens": ["east-a"], "write_key": "K1"},
    {"name": "west", "drives": 1, "tokens": ["west-a"], "write_key": "K2"},
]})
EAST, WEST = TOPOLOGY.sites


async def _up(tmp_path: Path, netns: bool) -> NetworkLab:
    lab = NetworkLab(TOPOLOGY, tmp_path / ("netns" if netns else "loopback"), netns=netns, announce_interval_s=0.3,
                     lan_port=DRIVE_LAN_PORT if netns else free_lan_port())
    lab.up()
    try:
        await lab.arm()
    except BaseException:
        lab.down()
        raise
    return lab


@pytest.fixture
async def netlab(tmp_path: Path) -> AsyncIterator[NetworkLab]:
    lab = await _up(tmp_path, netns=True)
    yield lab
    lab.down()


async def test_broadcast_crosses_a_real_bridge(netlab: NetworkLab) -> None:
    rows = await netlab.status()
    assert [(r["site"], r["led"], r["write_key"]) for r in rows] == [
        ("east", "RED", "K1"), ("east", "RED", "K1"), ("west", "RED", "K2")]
    assert [r["ip"] for r in rows] == ["198.18.1.101", "198.18.1.102", "198.18.2.101"]


async def _offer_east_to_a_west_drive(lab: NetworkLab) -> tuple[int, int]:
    """Put west's drive in east's pool and write east's OKT: only east's LAN hears it."""
    kms = lab.kms
    assert kms is not None
    before = (await vop_status(WEST.drive_ips(lab.netns)[0])).okt_timestamp
    kms.add_drive_to_pool("east", "west-d1")
    mapping = kms.apply_mapping("east")
    await station.write_okt(kms, "east-a", "east")
    await lab.wait_until(EAST, lambda s: s.okt_timestamp == mapping.timestamp, "rekeyed")
    await asyncio.sleep(1.0)  # three more announces
    return before, mapping.timestamp


async def test_a_drive_on_another_subnet_hears_nothing(netlab: NetworkLab, tmp_path: Path) -> None:
    before, east_ts = await _offer_east_to_a_west_drive(netlab)
    west = await vop_status(WEST.drive_ips(True)[0])
    assert west.okt_timestamp == before != east_ts and west.led is EncryptionLed.RED
    netlab.down()
    # Control: on loopback (one broadcast domain) the same offer does reach it.
    loop = await _up(tmp_path, netns=False)
    try:
        _, east_ts = await _offer_east_to_a_west_drive(loop)
        assert (await vop_status(WEST.drive_ips(False)[0])).okt_timestamp == east_ts
    finally:
        loop.down()


async def test_a_link_taken_down_and_brought_back(netlab: NetworkLab) -> None:
    kms = netlab.kms
    assert kms is not None
    old = (await vop_status(EAST.drive_ips(True)[0])).okt_timestamp
    netlab.set_link(EAST, "lib", up=False)
    mapping = kms.apply_mapping("east")
    await station.write_okt(kms, "east-a", "east")  # the bay is still reachable
    await asyncio.sleep(1.5)
    netlab.set_link(EAST, "lib", up=True)  # the drives could not hear the token; they still cannot be asked
    statuses = await netlab.wait_until(EAST, lambda s: s.okt_timestamp == mapping.timestamp, "caught up", 15)
    assert old != mapping.timestamp and {s.led for s in statuses} == {EncryptionLed.RED}


async def test_tcpdump_captures_traffic_the_decoder_reads(netlab: NetworkLab, tmp_path: Path) -> None:
    pcap = tmp_path / "east-lib.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", netlab.namespace(EAST, "lib"), "tcpdump", "-i", "eth0", "-U", "--immediate-mode",
                             "-w", str(pcap), "udp portrange 7010-7012"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        await asyncio.sleep(1.0)  # tcpdump is listening
        kms = netlab.kms
        assert kms is not None
        mapping = kms.apply_mapping("east")
        await station.write_okt(kms, "east-a", "east")
        await netlab.wait_until(EAST, lambda s: s.okt_timestamp == mapping.timestamp, "rekeyed")
        await asyncio.sleep(0.5)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(10)
    frames = [f for f in read_capture(pcap) if f.frame is not None]
    types = {f.frame.message.TYPE for f in frames}  # type: ignore[union-attr]
    assert {MessageType.KEYS_AVAILABLE, MessageType.KEY_REQUEST, MessageType.MEDIA_KEY_PACKAGE,
            MessageType.KEY_ACK} <= types
    # West's broadcasts cross the shared bridge too (one L2 domain), but east's drives, on another
    # subnet, only ever ask east's token.
    assert {f.dst[0] for f in frames if f.frame.message.TYPE is MessageType.KEY_REQUEST} == {"198.18.1.21"}  # type: ignore[union-attr]
    secrets = [kms.key_value(k) for k in kms.key_ids()] + [kms.token_secret("east-a")]
    secrets += [k for n in EAST.drive_names() for _, k in kms.device_keys(n, 5)]
    data = pcap.read_bytes()
    assert [s.hex() for s in secrets if s in data] == []
