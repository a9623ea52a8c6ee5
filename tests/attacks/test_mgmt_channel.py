"""Issue 13, findings 1 and 10 and the low finding on temporary files, tried against live daemons
the way an attacker on the KMS-token wire, or one with a copy of the token's disk, would.

Finding 1 was: a captured ``kms write-okt`` showed every clear authorisation in clear, and
broadcasting them wiped every drive; the token's state files (0644) and air-gap images held
them too. Finding 10: with the token's state directory moved aside, every captured write
was accepted again. Each test below shows the attack fails now, and keeps a control that
would have caught it succeeding (the same check made against what the attacker lacks).
"""

from __future__ import annotations

import asyncio
import os
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import pytest

from kms_client import station
from kms_client.builders import prepare_okt
from lab.cluster import Lab, LabPlan
from protocol import (
    ClearAuthorization,
    ClearKeys,
    MgmtChallenge,
    MgmtResult,
    TokenStatus,
    WriteOkt,
    decode,
    decode_header,
    encode,
    encode_body,
    envelope,
    open_frame,
)
from protocol.constants import HEADER_SIZE, TOKEN_MGMT_PORT, EncryptionLed, MessageType, MgmtStatus, TokenMode
from token_daemon.memory import IMAGE_NAME

pytestmark = pytest.mark.network
POOL = "pool-1"
TOKEN = "token-A"
CLEAR_ENTRIES_PER_DATAGRAM = 36  # as the token splits them: each datagram under 1,200 octets


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    async with Lab(tmp_path / "lab", LabPlan(token_names=(TOKEN,), drive_count=4, announce_interval_s=0.3)) as running:
        await running.arm(POOL)
        yield running


# --- the attacker's tools -------------------------------------------------------


def frames_of(stream: bytes) -> list[bytes]:
    """A TCP byte stream cut into whole frames by their headers."""
    out = []
    while len(stream) >= HEADER_SIZE:
        end = HEADER_SIZE + decode_header(stream[:HEADER_SIZE]).remaining
        out.append(stream[:end])
        stream = stream[end:]
    return out


@dataclass
class WireTap:
    """A relay on the wire between the KMS and a token that keeps every octet, both ways."""

    listen: str
    target: str
    requests: list[bytes] = field(default_factory=list)
    replies: list[bytes] = field(default_factory=list)
    _active: int = 0

    async def __aenter__(self) -> WireTap:
        self._server = await asyncio.start_server(self._relay, self.listen, TOKEN_MGMT_PORT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._active += 1
        sent, got = bytearray(), bytearray()
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target, TOKEN_MGMT_PORT)

            async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, into: bytearray) -> None:
                try:
                    while data := await asyncio.wait_for(src.read(65536), 10):
                        into.extend(data)
                        dst.write(data)
                        await dst.drain()
                finally:
                    dst.close()

            await asyncio.gather(pump(reader, up_writer, sent), pump(up_reader, writer, got), return_exceptions=True)
        finally:
            self.requests += frames_of(bytes(sent))
            self.replies += frames_of(bytes(got))
            self._active -= 1

    async def idle(self) -> None:
        for _ in range(100):
            if self._active == 0:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the relay did not finish")

    @property
    def octets(self) -> bytes:
        return b"".join(self.requests + self.replies)


def route_through(lab: Lab, token: str, ip: str) -> None:
    """The KMS reaches ``token`` at ``ip`` from now on (where the tap listens)."""
    with lab.kms.transaction() as conn:
        conn.execute("UPDATE tokens SET ip=? WHERE name=?", (ip, token))


def tap_address(lab: Lab) -> str:
    return lab.net.token_ip(9)  # in the lab's own /24, beside its one token


async def tapped_write_okt(lab: Lab) -> WireTap:
    """A real 'kms write-okt' (a new key mapped: Apply), captured on the wire."""
    key = lab.kms.create_key()
    lab.kms.create_key_set("KS2")
    lab.kms.add_key_to_set("KS2", key)
    lab.kms.set_mapping(POOL, ["KS1", "KS2"], key)
    route_through(lab, TOKEN, tap_address(lab))
    async with WireTap(tap_address(lab), lab.token_ips[TOKEN]) as tap:
        result = await station.write_okt(lab.kms, TOKEN, POOL)
        await tap.idle()
    route_through(lab, TOKEN, lab.token_ips[TOKEN])
    assert result.status is MgmtStatus.OK
    return tap


def secrets_of_the_write(lab: Lab) -> dict[str, list[bytes]]:
    """What finding 1 found in clear, as the token now holds it (in memory, from the write)."""
    memory = lab.tokens[TOKEN].token.memory
    assert memory.mode is TokenMode.OKT and memory.contents is not None
    message = decode_body_okt(memory.contents)
    return {
        "clear authorisation": [a.mac for e in message.entries for a in e.clear_authorizations],
        "key ID": [k.key_id for e in message.entries for k in e.package.media_keys],
        "wrapped key": [k.wrapped for e in message.entries for k in e.package.media_keys],
        "wrapped package": [encode_body(e.package) for e in message.entries],
    }


def decode_body_okt(contents: bytes) -> WriteOkt:
    from protocol import decode_body

    message = decode_body(MessageType.WRITE_OKT, contents)
    assert isinstance(message, WriteOkt)
    return message


def found_in(data: bytes, secrets: dict[str, list[bytes]]) -> list[str]:
    return [f"{what} {s.hex()}" for what, items in secrets.items() for s in items if s in data]


async def clear_keys_everyone_could_send(lab: Lab, macs: list[bytes]) -> int:
    """Broadcast CLEAR_KEYS on the drive LAN: every candidate MAC for every drive, with its true
    CSN and current device key ID (the worst case: the attacker knows both). Returns datagrams sent."""
    auths = [ClearAuthorization(lab.drive_csns[d], lab.kms.drive(d).device_key_id, mac)  # type: ignore[arg-type]
             for mac in macs for d in lab.drive_names]
    chunks = [auths[i : i + CLEAR_ENTRIES_PER_DATAGRAM] for i in range(0, len(auths), CLEAR_ENTRIES_PER_DATAGRAM)]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        for i, chunk in enumerate(chunks):
            sock.sendto(encode(ClearKeys(bytes(8), i, len(chunks), tuple(chunk))), (lab.net.broadcast, lab.net.lan_port))
            if i % 20 == 19:
                await asyncio.sleep(0.01)  # paced: the drives' queues must not drop what we test
    finally:
        sock.close()
    await asyncio.sleep(0.5)
    return len(chunks)


async def armed(lab: Lab) -> dict[str, tuple[EncryptionLed, bool, bytes]]:
    return {d: (s.led, s.reset, s.write_key_id) for d, s in (await lab.vop_all()).items()}


async def exchange(ip: str, frame: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(ip, TOKEN_MGMT_PORT)
    try:
        writer.write(frame)
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 5)
        return header + await asyncio.wait_for(reader.readexactly(decode_header(header).remaining), 5)
    finally:
        writer.close()


# --- finding 1: nothing to reuse on the wire ------------------------------------


async def test_a_captured_write_okt_shows_no_authorisation_key_id_or_package(lab: Lab) -> None:
    tap = await tapped_write_okt(lab)
    secret = lab.kms.token_secret(TOKEN)
    secrets = secrets_of_the_write(lab)
    assert all(secrets.values()) and len(secrets["clear authorisation"]) >= 4
    assert [decode(f).message.TYPE for f in tap.requests] == [MessageType.WRITE_OKT]
    assert found_in(tap.octets, secrets) == []
    # Control: what the wire carried is exactly that write, readable with the token secret alone.
    (request,) = tap.requests
    opened = open_frame(request, secret).message
    assert isinstance(opened, WriteOkt) and found_in(encode_body(opened), secrets) != []
    assert all(decode(f).sealed for f in tap.requests + tap.replies)


async def test_broadcasting_what_the_capture_holds_wipes_nobody(lab: Lab) -> None:
    tap = await tapped_write_okt(lab)
    await lab.wait_until(lambda s: s.led is EncryptionLed.RED, "red (armed)")
    before = await armed(lab)
    assert {led for led, _, _ in before.values()} == {EncryptionLed.RED}
    # Every 16-octet window of the capture as a clear MAC, for every drive; and the frames themselves.
    octets = tap.octets
    windows = list({octets[i : i + 16] for i in range(len(octets) - 15)})
    sent = await clear_keys_everyone_could_send(lab, windows)
    assert sent > 100
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    for frame in tap.requests + tap.replies:
        sock.sendto(frame, (lab.net.broadcast, lab.net.lan_port))
    sock.close()
    await asyncio.sleep(0.5)
    assert await armed(lab) == before, "a drive was cleared by what the capture held"
    # Control: the one authorisation the token holds for drive 1 (never on the wire) does clear it.
    first = lab.drive_names[0]
    ((key_id, device_key),) = lab.kms.device_keys(first, 1)
    real = envelope.clear_mac(device_key, lab.drive_csns[first], key_id)
    assert real in secrets_of_the_write(lab)["clear authorisation"]
    await clear_keys_everyone_could_send(lab, [real])
    after = await armed(lab)
    assert after[first][1] is True and all(after[d] == before[d] for d in lab.drive_names[1:])


async def test_token_state_and_air_gap_images_hold_no_clear_authorisation(lab: Lab, tmp_path: Path) -> None:
    secrets = secrets_of_the_write(lab)
    state = lab.workdir / TOKEN
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = [p for p in state.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {IMAGE_NAME} and any(p.name.startswith("contents-") for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert found_in(path.read_bytes(), secrets) == [], path
    # An air-gap image of the same write: sealed too.
    image = tmp_path / "okt.img"
    station.write_image(lab.kms, TOKEN, prepare_okt(lab.kms, POOL), image)
    data = image.read_bytes()
    assert stat.S_IMODE(image.stat().st_mode) == 0o600
    assert found_in(data, {"clear authorisation": secrets["clear authorisation"]}) == []
    opened = open_frame(data, lab.kms.token_secret(TOKEN)).message  # control: it is that write
    assert isinstance(opened, WriteOkt) and len(opened.entries) == len(lab.drive_names)
    assert all(a.mac in encode_body(opened) for e in opened.entries for a in e.clear_authorizations)


# --- finding 10: the counter survives losing the state directory ----------------


async def test_captured_writes_are_refused_by_a_token_whose_state_was_moved_aside(lab: Lab) -> None:
    tap = await tapped_write_okt(lab)
    (captured_write,) = tap.requests
    secret = lab.kms.token_secret(TOKEN)
    ip = lab.token_ips[TOKEN]

    async def state_moved_aside(suffix: str) -> None:
        await lab.remove_token(TOKEN)
        (lab.workdir / TOKEN).rename(lab.workdir / f"{TOKEN}.{suffix}")
        await lab.insert_token(TOKEN)
        assert lab.tokens[TOKEN].token.memory.mode is TokenMode.EMPTY

    await state_moved_aside("aside-1")
    reply = open_frame(await exchange(ip, captured_write), secret)  # only the KMS can read this answer
    assert isinstance(reply.message, MgmtChallenge)
    memory = lab.tokens[TOKEN].token.memory
    assert memory.mode is TokenMode.EMPTY and not memory.counter_set and memory.last_write_counter == 0

    # The KMS's next write resynchronises the counter by itself (captured too) and goes through.
    lab.kms.set_mapping(POOL, ["KS1", "KS2"], lab.kms.mapping(POOL).write_key_id)  # Apply: a new timestamp
    route_through(lab, TOKEN, tap_address(lab))
    async with WireTap(tap_address(lab), ip) as tap2:
        assert (await station.write_okt(lab.kms, TOKEN, POOL)).status is MgmtStatus.OK
        await tap2.idle()
    route_through(lab, TOKEN, ip)
    types = [decode(f).message.TYPE for f in tap2.requests]
    assert types == [MessageType.WRITE_OKT, MessageType.RESYNC, MessageType.WRITE_OKT]
    assert "resync_token_counter" in [r.action for r in lab.kms.audit_records()]
    status = await station.token_status(lab.kms, TOKEN)
    assert isinstance(status, TokenStatus) and status.mode is TokenMode.OKT
    resync_counter = decode(tap2.requests[1]).counter
    assert resync_counter is not None and status.last_write_counter > resync_counter > decode(captured_write).counter  # type: ignore[operator]

    # Every captured write (the first one, and the new exchange) is refused now.
    for frame in [captured_write, *tap2.requests]:
        refused = open_frame(await exchange(ip, frame), secret).message
        assert isinstance(refused, MgmtResult) and refused.status is MgmtStatus.REPLAYED, refused

    # Moved aside again: the captured RESYNC (its challenge is spent) and the writes are refused.
    await state_moved_aside("aside-2")
    for frame in tap2.requests:
        answer = open_frame(await exchange(ip, frame), secret).message
        assert isinstance(answer, (MgmtChallenge, MgmtResult)), answer
        if isinstance(answer, MgmtResult):
            assert answer.status is MgmtStatus.REPLAYED
    memory = lab.tokens[TOKEN].token.memory
    assert memory.mode is TokenMode.EMPTY and not memory.counter_set

    # And the KMS's next write still works, arming every drive with the mapping's timestamp.
    lab.kms.set_mapping(POOL, ["KS1", "KS2"], lab.kms.mapping(POOL).write_key_id)
    assert (await station.write_okt(lab.kms, TOKEN, POOL)).status is MgmtStatus.OK
    stamp = lab.kms.mapping(POOL).timestamp
    await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == stamp, "armed again")


# --- low: temporary files left by a kill ----------------------------------------


async def test_temporary_files_a_kill_left_are_removed_at_start(lab: Lab) -> None:
    await lab.remove_token(TOKEN)
    state = lab.workdir / TOKEN
    left = [state / (IMAGE_NAME + ".tmp"), state / "contents-0123456789abcdef01234567.bin.tmp"]
    for path in left:
        path.write_bytes(os.urandom(64))
    os.chmod(state, 0o755)
    await lab.insert_token(TOKEN)
    assert not any(p.exists() for p in left)
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    assert lab.tokens[TOKEN].token.memory.mode is TokenMode.OKT  # the memory itself was kept
