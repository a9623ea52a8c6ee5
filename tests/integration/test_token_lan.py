"""The token's LAN socket over real sockets: a burst is read in bounded batches and answered."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from kms_client.builders import build_ekt
from lab.addresses import free_net
from protocol import KeyRequest, decode, encode
from protocol.constants import TOKEN_LAN_PORT, KeyKind, MessageType
from tests.site import TOKEN_A, make_site
from token_daemon.memory import MemoryStore, TokenMemory
from token_daemon.service import TokenConfig, TokenService

pytestmark = pytest.mark.network

BURST = 1_500
BATCH = 64


async def test_a_burst_is_read_in_bounded_batches_and_every_request_answered(tmp_path: Path) -> None:
    site = make_site(tmp_path, 3)
    secret = site.secrets[TOKEN_A]
    ekt = build_ekt(site.kms, site.names, use_pckey=True)
    state = tmp_path / "tok"
    memory = TokenMemory.blank()
    memory.counter_set = True
    memory.load_write(ekt)
    MemoryStore(state, secret).save(memory)
    net = free_net()
    config = TokenConfig(net.token_ip(0), state, secret, broadcast=net.broadcast, drive_lan_port=net.lan_port,
                         announce_interval_s=3600, lan_batch=BATCH)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    client.bind((net.host(200), 0))
    client.setblocking(False)
    try:
        async with TokenService(config) as token:
            batches: list[int] = []
            handle = token._receive_batch
            token._lan._on_batch = lambda batch: (batches.append(len(batch)), handle(batch))  # type: ignore[union-attr]
            # Three CSNs held, asked three times each (within the per-CSN budget), then junk.
            requests = [encode(KeyRequest(m.csn, KeyKind.DEVICE, 0), sequence=1000 + 3 * i + r)
                        for i, m in enumerate(site.made) for r in range(3)]
            junk = [b"T10K" + bytes([9]) + bytes(40)] * (BURST - len(requests))
            for data in requests + junk:  # all at once: the token is not scheduled in between
                client.sendto(data, (config.ip, TOKEN_LAN_PORT))
            loop = asyncio.get_running_loop()
            answers = []
            for _ in range(len(requests)):
                answers.append(decode(await asyncio.wait_for(loop.sock_recv(client, 65535), 10)))
            for _ in range(200):
                if token.counters.datagrams_in >= BURST:
                    break
                await asyncio.sleep(0.02)
            assert token.counters.datagrams_in == BURST and sum(batches) == BURST
            assert 1 < max(batches) <= BATCH  # many datagrams per wake-up, never more than the bound
            assert sum(token.counters.decode_errors.values()) == len(junk)
            assert sorted(f.sequence for f in answers) == [1000 + i for i in range(len(requests))]
            assert {f.message.TYPE for f in answers} == {MessageType.DEVICE_KEY_PACKAGE}
            assert token.counters.events["PackageServed"] == len(requests)
    finally:
        client.close()


async def test_a_write_is_announced_again_soon_so_one_lost_broadcast_costs_no_interval(tmp_path: Path) -> None:
    from kms_client.push import request
    from protocol import MgmtResult
    from protocol.constants import MgmtStatus

    site = make_site(tmp_path, 3)
    secret = site.secrets[TOKEN_A]
    state = tmp_path / "tok"
    memory = TokenMemory.blank()
    memory.counter_set = True
    MemoryStore(state, secret).save(memory)
    net = free_net()
    announced: list[float] = []
    loop = asyncio.get_running_loop()

    def tap(direction: str, transport: str, src: object, dst: object, data: bytes) -> None:
        if direction == "out" and transport == "udp" and decode(data).message.TYPE is MessageType.KEYS_AVAILABLE:
            announced.append(loop.time())

    config = TokenConfig(net.token_ip(0), state, secret, broadcast=net.broadcast, drive_lan_port=net.lan_port,
                         announce_interval_s=3600, announce_repeats_s=(0.05, 0.1))
    async with TokenService(config, tap=tap):
        reply = await request(config.ip, build_ekt(site.kms, site.names, use_pckey=True), secret=secret, counter=1,
                              port=config.mgmt_port)
        assert isinstance(reply, MgmtResult) and reply.status is MgmtStatus.OK
        for _ in range(250):  # bounded: 5 s at most
            if len(announced) >= 3:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # and no more than that until the (hour-long) interval
    assert len(announced) == 3  # at the write, then after each repeat gap
    assert announced[1] - announced[0] >= 0.05 and announced[2] - announced[1] >= 0.1
