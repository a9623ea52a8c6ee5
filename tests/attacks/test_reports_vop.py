"""Issue 13, findings 8 and 11 and the low ones, attacked against live daemons (protocol v3).

Each test plays the attacker on the drive LAN of a running lab (one token, four drives, every
frame over real loopback sockets) and shows the attack now fails, while what the seed shows
users still works: a real missing key still lights the token's error LED with its key ID, and
the VOP still resets a drive for whoever holds the drive host's service credential.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

import protocol as p
from drive_daemon.cartridge import Cartridge
from drive_daemon.vop import vop_load, vop_reset
from host.errors import MediumError, NotReady
from host.session import open_tape
from kms_client import station
from lab.cluster import Lab, LabPlan
from protocol.constants import (
    HEADER_SIZE,
    KEY_REQUEST_ANSWERS_PER_CSN_PER_S,
    TOKEN_LAN_PORT,
    VOP_PORT,
    EncryptionLed,
    ErrorCode,
    KeyKind,
    TokenLed,
    VopStatusCode,
)

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]
POOL = "pool-1"
#: The number of forged reports that took a version 2 token 572 s to absorb (finding 8).
FORGED_REPORTS = 68_000


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    plan = LabPlan(token_names=("token-A",), drive_count=4, announce_interval_s=0.3)
    async with Lab(tmp_path / "lab", plan) as running:
        yield running


def _forgeries(lab: Lab, count: int) -> list[tuple[str, bytes]]:
    """(source drive IP, datagram): reports an attacker on the drive LAN can make without the
    drives' PCkeys: every drive's CSN, from its own address, about the very write the token
    holds, with random key IDs and MACs; a few about other writes and unknown CSNs."""
    timestamp = lab.tokens["token-A"].token.memory.timestamp
    names = lab.drive_names
    out = []
    for i in range(count):
        name = names[i % len(names)]
        csn = lab.drive_csns[name] if i % 50 else os.urandom(8)
        ts = timestamp if i % 20 else timestamp + 1 + i
        code = ErrorCode.MISSING_KEY if i % 2 else ErrorCode.KEY_MESSAGE_DECRYPTION
        report = p.ErrorReport(csn, code, os.urandom(8), ts, os.urandom(16))
        out.append((lab.drive_ips[name], p.encode(report, sequence=i)))
    return out


def _send_all(datagrams: list[tuple[str, bytes]], to: tuple[str, int]) -> None:
    socks: dict[str, socket.socket] = {}
    try:
        for source, data in datagrams:
            if source not in socks:
                socks[source] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks[source].bind((source, 0))
            socks[source].sendto(data, to)
    finally:
        for s in socks.values():
            s.close()


async def _until(predicate, what: str, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout_s:.0f} s")
        await asyncio.sleep(0.02)


async def test_forged_error_reports_are_dropped_and_a_real_one_still_shows(lab: Lab, capsys, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.INFO, logger="t10k.token")
    key = await lab.arm(POOL)
    service = lab.tokens["token-A"]
    counters = service.counters
    token_at = (lab.token_ips["token-A"], TOKEN_LAN_PORT)
    forged = _forgeries(lab, FORGED_REPORTS)
    started, seen = time.monotonic(), counters.datagrams_in + counters.dropped
    for i in range(0, FORGED_REPORTS, 4_000):  # in bursts the token's queue holds, from a thread
        chunk = forged[i:i + 4_000]
        await asyncio.to_thread(_send_all, chunk, token_at)
        target = seen + i + len(chunk)
        await _until(lambda t=target: counters.datagrams_in + counters.dropped >= t, "absorbed")
    absorbed_s = time.monotonic() - started
    ignored = counters.events["ErrorIgnored"]
    assert ignored + counters.dropped == FORGED_REPORTS and counters.events["ErrorRecorded"] == 0
    assert service.token.memory.errors == {} and service.token.memory.packages
    summaries = [r.getMessage() for r in caplog.records if "error report about CSN" in r.getMessage()]
    assert 1 <= len(summaries) <= 1 + int(absorbed_s / 10) + 1  # one line per 10 s, not one per report

    # `kms token-status` answers, with nothing recorded (finding 8 broke it with a 16-bit count).
    started_status = time.monotonic()
    status = await station.token_status(lab.kms, "token-A")
    status_s = time.monotonic() - started_status
    assert status.errors == () and status.error_led is TokenLed.OFF
    with capsys.disabled():
        print(f"\n{FORGED_REPORTS} forged reports absorbed in {absorbed_s:.1f} s ({ignored} dropped as forged, "
              f"{counters.dropped} by a full queue); token status then in {status_s * 1000:.0f} ms")

    # A real missing key, the seed's way: a tape written under a key that then leaves the mapping.
    Cartridge.create(lab.library, "VOL001")
    ip = lab.drive_ips["drive-01"]
    await vop_load(ip, "VOL001")
    async with open_tape(ip) as tape:
        await tape.ready()
        await tape.write(b"written under the first key" * 10)
        await tape.write_filemarks(1)
        await tape.unload()
    await lab.map_new_key(POOL, "KS2")
    async with open_tape(ip) as tape:
        with contextlib.suppress(NotReady):
            await tape.ready()
        await tape.load()
        await tape.ready()
        with pytest.raises(MediumError):
            await tape.read()
    await _until(lambda: counters.events["ErrorRecorded"] == 1, "recorded", 10)
    shown = await _kms_token_status(lab)
    assert shown["error_led"] == "FLASHING_RED"
    (error,) = shown["errors"]
    assert error["error_code"].startswith("00006109") and error["key_id"] == key.hex()
    assert error["csn"] == lab.drive_csns["drive-01"].hex()


async def _t10k(*args: str) -> tuple[int, str, str]:
    """The CLI in its own process, the lab's daemons still serving in this one's loop."""
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "lab.cli", *args, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def _kms_token_status(lab: Lab) -> dict:  # type: ignore[type-arg]
    """`t10k kms token-status --token token-A --json`, as the operator runs it."""
    code, out, err = await _t10k("kms", "token-status", "--store", str(lab.kms.directory), "--token", "token-A", "--json")
    assert code == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


async def _vop_exchange(ip: str, frames: list[bytes]) -> list[p.Message]:
    """Send ``frames`` on one VOP connection, one reply read after each."""
    reader, writer = await asyncio.open_connection(ip, VOP_PORT)
    replies = []
    try:
        for frame in frames:
            writer.write(frame)
            await writer.drain()
            header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 5)
            rest = await asyncio.wait_for(reader.readexactly(p.decode_header(header).remaining), 5)
            replies.append(p.decode(header + rest).message)
    finally:
        writer.close()
    return replies


async def test_vop_reset_needs_the_drive_hosts_service_credential(lab: Lab) -> None:
    await lab.arm(POOL)
    ip = lab.drive_ips["drive-02"]
    # Without a credential: a bare reset, or one that answers a challenge with a guessed MAC.
    (bare,) = await _vop_exchange(ip, [p.encode(p.VopResetDrive(os.urandom(16), os.urandom(16)))])
    challenge, guessed = await _vop_exchange(ip, [
        p.encode(p.VopChallengeRequest()), p.encode(p.VopResetDrive(bytes(16), os.urandom(16)))])
    assert isinstance(challenge, p.VopChallenge) and challenge.csn == lab.drive_csns["drive-02"]
    # With a wrong credential, the whole exchange done right.
    wrong = await vop_reset(ip, os.urandom(32))
    for refused in (bare, guessed, wrong):
        assert isinstance(refused, p.VopResult) and refused.status is VopStatusCode.REFUSED, refused
    assert "MAC does not verify" in wrong.message
    assert (await lab.vop("drive-02")).led is EncryptionLed.RED  # status stays open: no credential needed
    assert lab.drives.counters.vop_refused["reset_refused"] == 3

    # A real reset, captured on the wire (a proxy on the VOP port), then replayed whole.
    captured: list[bytes] = []
    proxy = await _recording_proxy(ip, captured)
    proxy_port = proxy.sockets[0].getsockname()[1]
    try:
        from drive_daemon.credential import read_credential_file

        ok = await vop_reset("127.0.0.1", read_credential_file(lab.credential_file), port=proxy_port)
    finally:
        proxy.close()
        await proxy.wait_closed()
    assert ok.status is VopStatusCode.OK and len(captured) == 2
    await lab.wait_until(lambda s: s.reset, "reset", names=["drive-02"])
    await station.write_ekt(lab.kms, "token-A", ["drive-02"], use_pckey=True)
    await lab.wait_until(lambda s: s.led is EncryptionLed.AMBER, "enabled again", names=["drive-02"])
    new_challenge, replayed = await _vop_exchange(ip, captured)
    assert isinstance(new_challenge, p.VopChallenge) and isinstance(replayed, p.VopResult)
    assert replayed.status is VopStatusCode.REFUSED and "replayed reset" in replayed.message
    for drive in ("drive-01", "drive-02"):  # replayed to another drive too
        other = await _vop_exchange(lab.drive_ips[drive], captured[1:])
        assert other[0].status is VopStatusCode.REFUSED  # type: ignore[union-attr]
    status = await lab.vop("drive-02")
    assert status.encryption_enabled and not status.reset

    # With the right credential, through the CLI: ==RESET== and flashing green, as in the seed.
    code, out, err = await _t10k("vop", "reset", "--ip", ip, "--credential-file", str(lab.credential_file), "--json")
    assert code == 0, err
    assert json.loads(out)["status"] == "OK"
    status = await lab.vop("drive-02")
    assert status.status_fields[0] == "==RESET==" and status.led is EncryptionLed.FLASHING_GREEN


async def _recording_proxy(ip: str, captured: list[bytes]) -> asyncio.base_events.Server:
    """A TCP relay to the drive's VOP that keeps what the client sent (each request whole)."""

    async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(ip, VOP_PORT)
        try:
            for _ in range(2):
                header = await reader.readexactly(HEADER_SIZE)
                frame = header + await reader.readexactly(p.decode_header(header).remaining)
                captured.append(frame)
                up_writer.write(frame)
                reply_header = await up_reader.readexactly(HEADER_SIZE)
                writer.write(reply_header + await up_reader.readexactly(p.decode_header(reply_header).remaining))
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        finally:
            up_writer.close()
            writer.close()

    return await asyncio.start_server(relay, "127.0.0.1", 0)


async def test_key_requests_from_a_spoofed_source_get_a_bounded_answer(lab: Lab) -> None:
    """KEY_REQUEST reflection: a victim's address asking for a held CSN as fast as it can gets
    a few answers per second, however many requests are sent in its name."""
    await lab.arm(POOL)
    counters = lab.tokens["token-A"].counters
    csn = lab.drive_csns["drive-03"]
    request = p.encode(p.KeyRequest(csn, KeyKind.MEDIA, 0))
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind((lab.net.token_ip(5), 0))  # the "victim": a free address of the lab's net
    victim.setblocking(False)
    sent = 2_000
    try:
        started = time.monotonic()
        await asyncio.to_thread(lambda: [victim.sendto(request, (lab.token_ips["token-A"], TOKEN_LAN_PORT))
                                         for _ in range(sent)])
        await _until(lambda: counters.datagrams_in >= sent, "all requests read", 30)
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.2)
        answers, octets = 0, 0
        with contextlib.suppress(BlockingIOError):
            for _ in range(sent):
                octets += len(victim.recv(65_536))
                answers += 1
    finally:
        victim.close()
    assert 1 <= answers <= KEY_REQUEST_ANSWERS_PER_CSN_PER_S * (int(elapsed) + 2)
    assert counters.events["AnswerThrottled"] >= sent - answers - counters.dropped
    assert octets < len(request) * sent  # reflected: a small fraction of what was sent, not 4.9x


async def test_malformed_datagrams_are_counted_and_logged_once_per_interval(lab: Lab, caplog) -> None:  # type: ignore[no-untyped-def]
    counters = lab.tokens["token-A"].counters
    caplog.set_level(logging.INFO, logger="t10k.token")
    junk = [(lab.drive_ips["drive-01"], os.urandom(40)) for _ in range(3_000)]
    await asyncio.to_thread(_send_all, junk, (lab.token_ips["token-A"], TOKEN_LAN_PORT))
    await _until(lambda: sum(counters.decode_errors.values()) + counters.dropped >= len(junk), "counted", 30)
    lines = [r for r in caplog.records if "dropped datagram" in r.getMessage()]
    assert sum(counters.decode_errors.values()) >= len(junk) - counters.dropped
    assert 1 <= len(lines) <= len(counters.decode_errors)  # one line per reason per interval, not 3,000


def test_vop_reset_cli_without_a_credential_file_says_what_it_needs(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "lab.cli", "vop", "reset", "--ip", "127.0.0.1"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--credential-file" in result.stderr
    bad = tmp_path / "cred"
    bad.write_text("not hex\n")
    result = subprocess.run([sys.executable, "-m", "lab.cli", "vop", "reset", "--ip", "127.0.0.1", "--credential-file",
                             str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "64 hex digits" in result.stderr
