"""How the fuzz reaches each port of a live lab: datagrams paced by what the lab counted,
TCP frames one per connection or pipelined, iSCSI PDUs after a real login.

Every loop is bounded in count and in time. Each sender returns a :class:`Run`: what was
sent and what came back, for the test's assertions and its printed rates.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import selectors
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from host.iscsi_events import CommandComplete, ScsiReply
from host.iscsi_initiator import InitiatorConnection, Phase
from protocol.scsi.cdb import TestUnitReady

from .lab import LabProcess

#: A socket option of Linux: pick the source port at connect(), by the whole 4-tuple, not at bind().
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


@dataclass
class Run:
    port: str
    sent: int = 0
    seconds: float = 0.0
    #: CPU time the lab process spent meanwhile (its daemons share one process, hence one CPU)
    lab_cpu_s: float = 0.0
    #: CPU time the attacker (this process) spent meanwhile
    attacker_cpu_s: float = 0.0
    #: datagrams the lab counted as received (UDP), connections opened (TCP)
    delivered: int = 0
    replies: int = 0
    closed_by_peer: int = 0
    connect_failures: int = 0
    skipped: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0

    def note(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    def __str__(self) -> str:
        per_cpu = self.sent / self.lab_cpu_s if self.lab_cpu_s else 0.0
        return (f"{self.port}: {self.sent} frames in {self.seconds:.1f} s ({self.rate:,.0f}/s; lab CPU "
                f"{self.lab_cpu_s:.1f} s, {per_cpu:,.0f} frames per lab CPU second; attacker CPU "
                f"{self.attacker_cpu_s:.1f} s), delivered "
                f"{self.delivered}, replies {self.replies}, skipped {self.skipped}, {self.outcomes}")


# --- datagrams --------------------------------------------------------------------


def datagrams(lab: LabProcess, run: Run, frames: Callable[[], tuple[bytes, tuple[str, int]]], *, source: str,
              received: Callable[[dict], int], count: int, deadline: float, window: int = 192) -> Run:
    """Send datagrams until the lab counted ``count`` received, at most ``window`` ahead of it (so
    the kernel drops few; one it drops is made up). The lab's count includes the few datagrams
    its own daemons sent each other meanwhile (announcements)."""
    started = time.monotonic()
    base = received(lab.ask("received"))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        got = 0
        while min(run.sent, got) < count and time.monotonic() < deadline:  # a datagram the kernel dropped is made up
            for _ in range(max(1, min(window, count - got))):
                data, to = frames()
                try:
                    sock.sendto(data, to)
                except OSError as exc:  # our own send buffer full: not sent, not counted
                    run.note(f"send {type(exc).__name__}")
                    continue
                run.sent += 1
            last = -1
            while time.monotonic() < deadline:
                got = received(lab.ask("received")) - base
                if got >= run.sent - window // 3 or got == last:  # caught up, or idle (the rest dropped)
                    break
                last = got
                time.sleep(0.002)
            with contextlib.suppress(BlockingIOError):  # replies to the attacker: read and forgotten
                for _ in range(1000):
                    sock.recv(65536)
                    run.replies += 1
        for _ in range(200):  # the last window
            got = received(lab.ask("received")) - base
            if got >= run.sent:
                break
            time.sleep(0.005)
    run.delivered = got
    run.seconds = time.monotonic() - started
    return run


# --- TCP ----------------------------------------------------------------------------


async def connect(ip: str, port: int, source: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (ip, port))
    except BaseException:
        sock.close()
        raise
    return await asyncio.open_connection(sock=sock)


async def drain_until_closed(reader: asyncio.StreamReader, timeout_s: float) -> bytes:
    """What the peer says until it closes (or the timeout)."""
    parts = []
    with contextlib.suppress(asyncio.TimeoutError, TimeoutError, ConnectionError):
        async with asyncio.timeout(timeout_s):
            while part := await reader.read(65536):
                parts.append(part)
    return b"".join(parts)


@dataclass
class _Connection:
    worker: int
    data: bytes
    began: float
    sending: bool = True
    answered: bool = False


def one_frame_per_connection(run: Run, frames: Callable[[int], tuple[bytes, tuple[str, int]] | None], *,
                             sources: list[str], workers: int, count: int, deadline: float,
                             timeout_s: float = 5.0) -> Run:
    """Each frame on a connection of its own: sent, our side shut, the answer read until the peer closes.

    ``workers`` connections are open at once; worker ``w`` always connects from
    ``sources[w % len(sources)]`` (so per-peer caps are known). Plain non-blocking sockets on
    epoll: the attacker's side costs far less per connection than the daemon's, so the
    daemon, not the fuzz, sets the pace."""
    started = time.monotonic()
    selector = selectors.DefaultSelector()
    claimed = 0

    def open_next(w: int) -> None:
        nonlocal claimed
        while claimed < count and run.skipped < count and time.monotonic() < deadline:
            made = frames(w)
            if made is None:  # not sent, not counted: ``count`` frames are sent
                run.skipped += 1
                continue
            claimed += 1
            data, to = made
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((sources[w % len(sources)], 0))
            sock.setblocking(False)
            failed = sock.connect_ex(to)
            if failed not in (0, errno.EINPROGRESS):
                run.connect_failures += 1
                run.note(f"connect {errno.errorcode.get(failed, failed)}")
                sock.close()
                continue
            selector.register(sock, selectors.EVENT_WRITE, _Connection(w, data, time.monotonic()))
            return

    def finish(sock: socket.socket, conn: _Connection, outcome: str | None = None) -> None:
        selector.unregister(sock)
        sock.close()
        if outcome:
            run.note(outcome)
        if conn.answered:
            run.replies += 1
        if time.monotonic() - conn.began > 1.0:
            run.note("answered or closed after more than 1 s")
        open_next(conn.worker)

    for w in range(workers):
        open_next(w)
    swept = time.monotonic()
    while selector.get_map():
        for key, _ in selector.select(timeout=0.2):
            sock, conn = key.fileobj, key.data
            assert isinstance(sock, socket.socket) and isinstance(conn, _Connection)
            if conn.sending:
                failed = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if failed:
                    run.connect_failures += 1
                    finish(sock, conn, f"connect {errno.errorcode.get(failed, failed)}")
                    continue
                try:
                    sent = sock.send(conn.data)
                except BlockingIOError:
                    continue
                except OSError:
                    run.sent += 1
                    run.delivered += 1
                    finish(sock, conn, "reset while sending")
                    continue
                conn.data = conn.data[sent:]
                if conn.data:
                    continue
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
                conn.sending = False
                run.sent += 1
                run.delivered += 1
                selector.modify(sock, selectors.EVENT_READ, conn)
                continue
            try:
                chunk = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if chunk:
                conn.answered = True
            else:
                run.closed_by_peer += 1
                finish(sock, conn)
        now = time.monotonic()
        if now - swept > 0.5:  # a peer that neither answers nor closes is given up on (and counted)
            swept = now
            for key in list(selector.get_map().values()):
                conn = key.data
                if now - conn.began > timeout_s:
                    finish(key.fileobj, conn, "no close within the timeout")  # type: ignore[arg-type]
    run.seconds = time.monotonic() - started
    return run


# --- iSCSI ---------------------------------------------------------------------------


async def iscsi_login(ip: str, port: int, source: str, target: str, timeout_s: float = 5.0,
                      ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, InitiatorConnection]:
    """A real login (our initiator, no CHAP, no digests): the fuzz then speaks in its session."""
    reader, writer = await connect(ip, port, source)
    initiator = InitiatorConnection(initiator="iqn.2026-11.org.t10k-lab:fuzz", target=target)
    initiator.start_login()
    async with asyncio.timeout(timeout_s):
        while initiator.phase is Phase.LOGIN:
            for piece in initiator.data_to_send():
                writer.write(bytes(piece))
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("the target closed during login")
            initiator.receive_data(data)
            while initiator.next_event() is not None:
                pass
    if initiator.phase is not Phase.FULL_FEATURE:
        raise ConnectionError(f"login ended in {initiator.phase.value}")
    return reader, writer, initiator


async def ask_unit_ready(ip: str, port: int, source: str, target: str, timeout_s: float = 5.0) -> ScsiReply:
    """A real session's TEST UNIT READY: the target still executes commands."""
    reader, writer, initiator = await iscsi_login(ip, port, source, target, timeout_s)
    try:
        itt = initiator.send_command(TestUnitReady().build())
        async with asyncio.timeout(timeout_s):
            while True:
                for piece in initiator.data_to_send():
                    writer.write(bytes(piece))
                while (event := initiator.next_event()) is not None:
                    if isinstance(event, CommandComplete) and event.itt == itt:
                        return event.reply
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("the target closed before answering TEST UNIT READY")
                initiator.receive_data(data)
    finally:
        writer.close()
