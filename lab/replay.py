"""Replay the requests of a capture against live daemons and compare the replies.

Requests are frames sent to a service port (token LAN 7011, token management 7020, VOP
7030) without the REPLY flag (iSCSI on 3260 is not ours to replay and is skipped); each is sent again, to the captured
destination or to ``to``, and its reply compared with the captured reply (same flow,
same sequence). Frames a drive receives unsolicited (key packages on 7012, and with
``broadcast`` the LAN broadcasts on 7010) are injected too: replay must change nothing
that the protocol protects (sealed management, timestamps, clear-key MACs).

Management replies are sealed under the token's secret: with ``secrets`` (the secrets of
the tokens replayed to) a reply is opened and judged by its status; without, its verdict
is "sealed" (its type and size are all anyone else sees).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from protocol import AuthenticationError, Frame, MgmtResult, SealedBody, VopResult, decode, decode_header
from protocol.constants import (
    DRIVE_LAN_PORT,
    DRIVE_PORT,
    HEADER_SIZE,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    VOP_PORT,
    MessageType,
    MgmtStatus,
    VopStatusCode,
)
from protocol.errors import DecodeError
from protocol.pcap import CapturedFrame, read_capture
from .errors import ReplayError  # noqa: F401 - re-exported: its home before lab/errors.py

if TYPE_CHECKING:
    from protocol.cli_options import Progress



TCP_SERVICES = {TOKEN_MGMT_PORT, VOP_PORT}
UDP_REQUESTS = {TOKEN_LAN_PORT}


@dataclass(frozen=True)
class ReplayResult:
    index: int
    transport: str
    to: str
    request: str
    captured_reply: str | None
    replay_reply: str | None
    verdict: str  # "same", "different", "refused as replay", "sealed", "no reply", "injected", "skipped"
    note: str = ""

    def to_json(self) -> dict[str, object]:
        return self.__dict__.copy()


def _describe_reply(frame: Frame | None) -> str | None:
    if frame is None:
        return None
    m = frame.message
    if isinstance(m, SealedBody):
        return f"{m.TYPE.name} (sealed)"
    status = getattr(m, "status", None)
    return m.TYPE.name + (f" {status.name}" if hasattr(status, "name") else "")


def _captured_reply(frames: list[CapturedFrame], i: int) -> Frame | None:
    req = frames[i]
    assert req.frame is not None
    for later in frames[i + 1 :]:
        if later.frame is not None and later.frame.is_reply and later.src == req.dst and later.dst == req.src \
                and later.frame.sequence == req.frame.sequence:
            return later.frame
    return None


def _opened(frame: Frame | None, secrets: Sequence[bytes]) -> Frame | None:
    """A sealed reply opened under whichever of ``secrets`` it was sealed with (or as it is)."""
    if frame is None or not frame.sealed:
        return frame
    for secret in secrets:
        try:
            return frame.open(secret)
        except (AuthenticationError, DecodeError):
            continue
    return frame


def _verdict(captured: Frame | None, replayed: Frame | None) -> tuple[str, str]:
    if replayed is None:
        return "no reply", ""
    m = replayed.message
    if isinstance(m, SealedBody):
        return "sealed", "a sealed reply: give the token's secret (--secret-file) to judge it"
    if isinstance(m, MgmtResult) and m.status in (MgmtStatus.REPLAYED, MgmtStatus.AUTH_FAILED):
        return "refused as replay", m.message[:80]
    was = captured.message if captured is not None else None
    if isinstance(m, VopResult) and m.status is VopStatusCode.REFUSED and isinstance(was, VopResult) and \
            was.status is VopStatusCode.OK:
        return "refused as replay", m.message[:80]  # a reset answering another connection's challenge
    if captured is None:
        return "different", "nothing was captured in reply"
    if _describe_reply(captured) == _describe_reply(replayed):
        return "same", ""
    return "different", f"captured {_describe_reply(captured)}"


async def _tcp_exchange(host: str, port: int, data: bytes, timeout_s: float) -> Frame | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError):
        return None
    try:
        writer.write(data)
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), timeout_s)
        rest = await asyncio.wait_for(reader.readexactly(decode_header(header).remaining), timeout_s)
        return decode(header + rest)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, DecodeError):
        return None
    finally:
        writer.close()


def _udp_exchange(sock: socket.socket, dest: tuple[str, int], data: bytes, timeout_s: float) -> Frame | None:
    sock.sendto(data, dest)
    sock.settimeout(timeout_s)
    try:
        reply, _ = sock.recvfrom(65535)
        return decode(reply)
    except (OSError, DecodeError):
        return None


def _action(f: CapturedFrame, broadcast: str | None) -> str | None:
    """What replay does with a captured frame: exchange (tcp/udp), inject, or nothing (None)."""
    if f.frame is None:
        return None
    if f.transport == "tcp" and f.dst[1] in TCP_SERVICES and not f.frame.is_reply:
        return "tcp"
    if f.transport == "udp" and f.dst[1] in UDP_REQUESTS and not f.frame.is_reply:
        return "udp"
    if f.transport == "udp" and f.dst[1] == DRIVE_PORT:  # key packages to drives: injected
        return "inject"
    if f.transport == "udp" and f.dst[1] == DRIVE_LAN_PORT and broadcast and not f.frame.is_reply:
        return "broadcast"
    return None


def _announce(action: str, to: str, name: str, timeout_s: float, captured: bool) -> str:
    if action == "tcp" or (action == "udp" and captured):
        return f"{name} to {to}, waiting up to {timeout_s:g} s for its reply"
    return f"{name} to {to} (no reply expected)"


def _renumber(ip: str, renumber: tuple[ipaddress.IPv4Network, ipaddress.IPv4Network] | None) -> str:
    if renumber is None:
        return ip
    old, new = renumber
    address = ipaddress.IPv4Address(ip)
    if address not in old:
        return ip
    return str(new.network_address + (int(address) - int(old.network_address)))


async def replay(path: Path, *, to: str | None = None, broadcast: str | None = None, source: str = "127.0.0.250",
                 timeout_s: float = 1.0, allow_vop_reset: bool = False, progress: Progress | None = None,
                 give_up_after: int | None = None, lan_port: int = DRIVE_LAN_PORT,
                 renumber: tuple[ipaddress.IPv4Network, ipaddress.IPv4Network] | None = None,
                 secrets: Sequence[bytes] = ()) -> list[ReplayResult]:
    """VOP Reset Drive is skipped unless ``allow_vop_reset``; replayed, a version 3 drive refuses it
    (it answers another connection's challenge, not the replay's). ``progress`` hears of each request
    before it is sent (what is awaited, for how long). With ``give_up_after`` N, a host that has
    left N requests in a row unanswered, and never answered one, stops the replay (ReplayError).
    ``renumber`` (captured network, live network) moves captured destinations onto a lab on other
    addresses; ``lan_port`` is its drive LAN."""
    frames = read_capture(path)
    results: list[ReplayResult] = []
    todo = [(i, f, a) for i, f in enumerate(frames) if (a := _action(f, broadcast)) is not None]
    if progress is not None:
        progress.total = len(todo)
    unanswered: dict[str, int] = {}  # per host: requests unanswered in a row, while it never answered
    answered: set[str] = set()

    def record(result: ReplayResult, host: str) -> None:
        results.append(result)
        if result.verdict in ("injected", "skipped") or host in answered:
            return
        if result.verdict != "no reply":
            answered.add(host)
            return
        unanswered[host] = unanswered.get(host, 0) + 1
        if give_up_after is not None and unanswered[host] >= give_up_after:
            raise ReplayError(f"nothing answers at {host}: {unanswered[host]} request(s) in a row got no reply "
                              f"within {timeout_s:g} s (is the daemon running there? is --ip right?)")

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.bind((source, 0))
    try:
        for i, f, action in todo:
            assert f.frame is not None
            host = to or _renumber(f.dst[0], renumber)
            name = f.frame.message.TYPE.name
            captured = _opened(_captured_reply(frames, i), secrets) if action in ("tcp", "udp") else None
            dest = f"{broadcast if action == 'broadcast' else host}:{f.dst[1]}"
            if progress is not None:
                progress.step(_announce(action, dest, name, timeout_s, captured is not None))
            if f.frame.message.TYPE is MessageType.VOP_RESET_DRIVE and not allow_vop_reset:
                record(ReplayResult(i, "tcp", dest, name, None, None, "skipped",
                                    "a drive reset: --allow-vop-reset to replay it (refused)"), host)
            elif action == "tcp":
                replayed = _opened(await _tcp_exchange(host, f.dst[1], f.raw, timeout_s), secrets)
                verdict, note = _verdict(captured, replayed)
                record(ReplayResult(i, "tcp", dest, name, _describe_reply(captured), _describe_reply(replayed),
                                    verdict, note), host)
            elif action == "udp":
                replayed = await asyncio.to_thread(_udp_exchange, sock, (host, f.dst[1]), f.raw,
                                                   timeout_s if captured is not None else 0.05)
                verdict, note = _verdict(captured, replayed) if captured is not None else ("injected", "")
                record(ReplayResult(i, "udp", dest, name, _describe_reply(captured), _describe_reply(replayed),
                                    verdict, note), host)
            elif action == "inject":
                sock.sendto(f.raw, (host, DRIVE_PORT))
                record(ReplayResult(i, "udp", dest, name, None, None, "injected"), host)
            else:
                assert broadcast is not None
                sock.sendto(f.raw, (broadcast, lan_port))
                record(ReplayResult(i, "udp", f"{broadcast}:{lan_port}", name, None, None, "injected"), host)
    finally:
        sock.close()
    await asyncio.sleep(0.2)  # let the daemons act on what was injected before anyone looks
    return results
