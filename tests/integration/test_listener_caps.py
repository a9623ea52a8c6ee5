"""Issue 13, findings 2 and 3: the token authenticates before it parses, and no TCP listener
(token management, drive VOP) allocates what a peer declares or holds connections for ever."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time

import pytest

from kms_client import station
from lab.cluster import Lab
from protocol import codec, decode, open_frame
from protocol.codec import frame_header
from protocol.constants import HEADER_SIZE, TOKEN_MGMT_PORT, VOP_PORT, HeaderFlag, MessageType, MgmtStatus
from protocol.layouts import MANAGEMENT_BODY_CAPS, Header
from protocol.messages import MgmtResult, VopStatus, VopStatusRequest
from protocol import encode
from tests.integration.conftest import BOTH_SOCKET_MODES, POOL, enrol_and_arm

pytestmark = pytest.mark.network
EKT_CAP = MANAGEMENT_BODY_CAPS[MessageType.WRITE_EKT]
OKT_CAP = MANAGEMENT_BODY_CAPS[MessageType.WRITE_OKT]


def _auth_header(message_type: MessageType, body_length: int) -> bytes:
    plain = Header.parse(frame_header(message_type, body_length))
    return Header.build(dict(plain, flags=int(HeaderFlag.AUTHENTICATED)))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), seconds) == b""
    except (TimeoutError, asyncio.TimeoutError):
        return False
    except ConnectionError:
        return True


async def _connect(ip: str, port: int, source: str | None = None) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(ip, port, local_addr=(source, 0) if source else None)


async def test_a_huge_declared_write_is_refused_from_its_header(lab: Lab) -> None:
    token = lab.tokens[lab.token_names[0]]
    ip = token.config.ip
    reader, writer = await _connect(ip, TOKEN_MGMT_PORT)
    writer.write(_auth_header(MessageType.WRITE_EKT, EKT_CAP + 1))  # 64 MiB would do the same
    await writer.drain()
    assert await _closed_within(reader, 2.0)
    writer.close()
    assert token.counters.decode_errors["TOO_LARGE"] == 1


async def test_a_forged_write_costs_one_aead_check_never_a_parse_and_real_writes_go_on(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[MessageType] = []
    real_decode_body = codec.decode_body
    monkeypatch.setattr(codec, "decode_body", lambda t, body: parsed.append(t) or real_decode_body(t, body))
    token = lab.tokens[lab.token_names[0]]
    ip = token.config.ip
    body = os.urandom(EKT_CAP - 1000)  # ~2.3 MB, within the cap: read, AEAD-checked, never parsed
    forged = _auth_header(MessageType.WRITE_EKT, len(body)) + body + (1 << 40).to_bytes(8, "big") + bytes(12)

    async def forger() -> MgmtStatus:
        reader, writer = await _connect(ip, TOKEN_MGMT_PORT)
        writer.write(forged)
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 10)
        reply = open_frame(header + await reader.readexactly(codec.decode_header(header).remaining),
                           lab.kms.token_secret(lab.token_names[0]))
        writer.close()
        assert isinstance(reply.message, MgmtResult)
        return reply.message.status

    statuses = await asyncio.gather(enrol_and_arm(lab), *(forger() for _ in range(6)))
    assert statuses[1:] == [MgmtStatus.AUTH_FAILED] * 6
    assert MessageType.WRITE_EKT in parsed  # the real EKT was parsed; no forgery was:
    assert parsed.count(MessageType.WRITE_EKT) == 1 and parsed.count(MessageType.WRITE_OKT) == 1
    result = await station.write_okt(lab.kms, lab.token_names[0], POOL)
    assert result.status is MgmtStatus.OK


async def test_headers_alone_pin_no_memory_and_are_dropped_at_the_idle_timeout(lab: Lab) -> None:
    token = lab.tokens[lab.token_names[0]]
    token.config = dataclasses.replace(token.config, mgmt_idle_timeout_s=1.0, mgmt_body_timeout_s=1.5)
    ip, total, per_peer = token.config.ip, token.config.mgmt_total, token.config.mgmt_per_peer
    before = _rss_bytes()
    conns = []
    for i in range(200):  # 25 source addresses x 8: the per-peer cap admits all, the total cap 64
        reader, writer = await _connect(ip, TOKEN_MGMT_PORT, f"127.250.{i // per_peer}.1")
        writer.write(_auth_header(MessageType.WRITE_OKT, OKT_CAP))  # 23 MB declared, none sent
        conns.append((reader, writer))
    for _, writer in conns:
        try:
            await writer.drain()
        except ConnectionError:
            pass  # closed at once: over the total cap
    closed_at_once = await asyncio.gather(*(_closed_within(r, 0.5) for r, _ in conns))
    assert sum(closed_at_once) == 200 - total
    assert token.counters.mgmt_refused["total_cap"] == 200 - total
    grown = _rss_bytes() - before
    assert grown < 64 * 1024 * 1024, f"200 header-only connections grew this process by {grown} octets"
    started = time.monotonic()
    held = [r for (r, _), gone in zip(conns, closed_at_once, strict=True) if not gone]
    assert all(await asyncio.gather(*(_closed_within(r, 5.0) for r in held)))
    assert time.monotonic() - started < 5.0
    assert token.counters.mgmt_refused["idle_timeout"] == total
    for _, writer in conns:
        writer.close()
    await enrol_and_arm(lab)  # and it serves


async def test_the_per_peer_cap_closes_the_excess_at_once(lab: Lab) -> None:
    token = lab.tokens[lab.token_names[0]]
    per_peer = token.config.mgmt_per_peer
    conns = [await _connect(token.config.ip, TOKEN_MGMT_PORT, "127.250.9.9") for _ in range(per_peer + 3)]
    closed = await asyncio.gather(*(_closed_within(r, 0.5) for r, _ in conns))
    assert closed == [False] * per_peer + [True] * 3
    assert token.counters.mgmt_refused["per_peer_cap"] == 3
    for _, writer in conns:
        writer.close()
    assert (await station.token_status(lab.kms, lab.token_names[0])).packages_held == 0  # others still served


@BOTH_SOCKET_MODES
async def test_vop_refuses_a_large_declared_body_and_caps_connections(lab: Lab) -> None:
    ip = lab.drive_ips[lab.drive_names[0]]
    host = lab.drives
    reader, writer = await _connect(ip, VOP_PORT)
    writer.write(frame_header(MessageType.VOP_LOAD, 64 * 1024 * 1024))
    await writer.drain()
    header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 2)
    reply = decode(header + await reader.readexactly(codec.decode_header(header).remaining))
    assert "exceeds its cap" in reply.message.message
    writer.close()
    per_peer = host.config.vop_per_peer
    conns = [await _connect(ip, VOP_PORT, "127.250.8.8") for _ in range(per_peer + 2)]
    closed = await asyncio.gather(*(_closed_within(r, 0.5) for r, _ in conns))
    assert closed == [False] * per_peer + [True] * 2
    assert host.counters.vop_refused["per_peer_cap"] == 2
    for _, writer in conns:
        writer.close()
    reader, writer = await _connect(ip, VOP_PORT)  # another peer is still served
    writer.write(encode(VopStatusRequest()))
    header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 2)
    reply = decode(header + await reader.readexactly(codec.decode_header(header).remaining))
    assert isinstance(reply.message, VopStatus)
    writer.close()
