"""The token daemon's asyncio shell: it moves bytes, owns timers and persists.

All protocol decisions are the :class:`Token`'s; this layer decodes, counts what
it could not decode, and keeps serving whatever arrives.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from netcheck.heap import collector_paused
from netcheck.limits import ConnectionGate, ReasonLog, read_bounded
from protocol import DecodeError, DecodeReason, MgmtResult, Transmit, decode, decode_header, encode_authenticated
from protocol.constants import (
    ANNOUNCE_INTERVAL_S,
    ANNOUNCE_REPEATS_S,
    DRIVE_LAN_PORT,
    HEADER_SIZE,
    LOOPBACK_BROADCAST,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    TOKEN_SECRET_SIZE,
    MessageType,
    MgmtStatus,
)
from protocol.keyfile import read_hex_file
from protocol.layouts import body_cap
from protocol.timestamps import now_us

from .lan import Datagram, LanSocket
from .memory import IMAGE_NAME, MemoryStore
from .token import AnswerThrottled, ErrorIgnored, ErrorRecorded, Event, ManagementRefused, Output, Token

if TYPE_CHECKING:
    from events import EventPublisher

log = logging.getLogger("t10k.token")

#: tap(direction, transport, source, destination, data): sees every datagram and frame.
Tap = Callable[[str, str, tuple[str, int], tuple[str, int], bytes], None]
EventSink = Callable[[Event], None]


@dataclass(frozen=True)
class TokenConfig:
    ip: str
    state_dir: Path
    secret: bytes
    broadcast: str = LOOPBACK_BROADCAST
    lan_port: int = TOKEN_LAN_PORT
    drive_lan_port: int = DRIVE_LAN_PORT
    mgmt_port: int = TOKEN_MGMT_PORT
    announce_interval_s: float = ANNOUNCE_INTERVAL_S
    #: Gaps after a write's announcement before it is sent again (then every announce_interval_s).
    announce_repeats_s: tuple[float, ...] = ANNOUNCE_REPEATS_S
    mgmt_backlog: int = 128
    #: A management connection waits at most this long for a request's header (idle timeout)...
    mgmt_idle_timeout_s: float = 30.0
    #: ...and this long for its body once the header passed its checks.
    mgmt_body_timeout_s: float = 60.0
    #: Management connections one address may hold, and the listener in all (excess closed at once).
    mgmt_per_peer: int = 8
    mgmt_total: int = 64
    #: Datagrams read from the LAN socket per event-loop wake-up, then other work gets a turn: about
    #: 90 ms of answers, and as many as the 4 MiB receive buffer holds, so a loop shared with other
    #: work (a lab, a bench) still empties it each turn.
    lan_batch: int = 4096
    #: Replies waiting while the kernel's send buffer is full; beyond this they are dropped (drives retry).
    send_backlog: int = 16384
    #: Receive buffer for the LAN socket: a pool's pulls arrive as a burst (the kernel caps it at rmem_max).
    receive_buffer_bytes: int = 4 * 1024 * 1024
    #: Acknowledgements and error reports are written at most this often (coalesced).
    persist_interval_s: float = 0.2
    #: A failed write is retried after this, doubling up to ``persist_backoff_max_s``.
    persist_backoff_max_s: float = 5.0


@dataclass
class Counters:
    decode_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    datagrams_in: int = 0
    datagrams_out: int = 0
    #: Datagrams read but not handled (none since the LAN socket has no queue of its own: what the
    #: token cannot keep up with stays in, or overflows, the kernel's receive buffer).
    dropped: int = 0
    #: Replies the kernel refused or a full send backlog dropped.
    send_failures: int = 0
    #: Writes of the token's state that failed (each is retried).
    persist_failures: int = 0
    #: Management connections refused or ended early, per reason (caps, timeouts, decode errors).
    mgmt_refused: collections.Counter[str] = field(default_factory=collections.Counter)


class TokenService:
    def __init__(self, config: TokenConfig, *, tap: Tap | None = None, events: EventPublisher | None = None,
                 site: str = "lab") -> None:
        self.config = config
        self._publisher = events
        self._site = site
        self._memory = MemoryStore(config.state_dir, config.secret)
        with collector_paused():  # a memory of 10,000 packages is decoded in one burst too
            self.token = Token(self._memory.load(), config.secret)
        self.counters = Counters()
        self._tap = tap
        self._sinks: list[EventSink] = []
        self._lan: LanSocket | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._persist_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._announced_write = asyncio.Event()
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        #: Why the state cannot be written now (None: it can); the log and status say it.
        self.persist_error: str | None = None
        self._gate = ConnectionGate(config.mgmt_per_peer, config.mgmt_total)
        self._reasons = ReasonLog(log, self.counters.mgmt_refused)
        self._lan_reasons = ReasonLog(log, collections.Counter())

    def subscribe(self, sink: EventSink) -> None:
        self._sinks.append(sink)

    # --- lifecycle ------------------------------------------------------

    async def __aenter__(self) -> TokenService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        from .airgap import lock_state

        self._bay_lock = lock_state(self.config.state_dir)  # in the bay: no image can be loaded meanwhile
        for name in self._memory.prepare():  # 0700, and no temporary file a kill left mid-write
            log.warning("token %s: removed %s, left by a write that did not finish", self.config.ip, name)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.config.receive_buffer_bytes)
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports double
        if granted < self.config.receive_buffer_bytes:
            log.warning("token %s: UDP receive buffer is %d bytes, not %d (raise net.core.rmem_max): "
                        "large pools will see retries", self.config.ip, granted, self.config.receive_buffer_bytes)
        try:
            sock.bind((self.config.ip, self.config.lan_port))
        except OSError as exc:
            sock.close()
            self._release_bay()
            raise self._bind_error(exc, self.config.lan_port, "udp", "LAN socket") from None
        self._lan = LanSocket(sock, self._receive_batch, batch=self.config.lan_batch, backlog=self.config.send_backlog)
        try:
            self._server = await asyncio.start_server(
                self._handle_mgmt, self.config.ip, self.config.mgmt_port,
                backlog=self.config.mgmt_backlog, reuse_address=True,
            )
        except OSError as exc:
            self._lan.close()
            self._release_bay()
            raise self._bind_error(exc, self.config.mgmt_port, "tcp", "management listener") from None
        self._tasks = [
            asyncio.create_task(self._announce_forever(), name=f"token {self.config.ip} announce"),
            asyncio.create_task(self._write_behind(), name=f"token {self.config.ip} persist"),
        ]
        log.info("token %s serving: LAN udp/%d, management tcp/%d", self.config.ip, self.config.lan_port,
                 self.config.mgmt_port)
        announcement = self.token.announcement()
        if announcement is not None:  # inserted in the bay: say at once what it holds
            self._send(announcement)
        if self._publisher is not None:
            self._publish(Output())

    def _bind_error(self, exc: OSError, port: int, transport: str, what: str) -> Exception:
        from netcheck import bind_failure, is_bind_clash

        from .errors import BindError

        if not is_bind_clash(exc):
            return exc
        return BindError(bind_failure(exc, self.config.ip, port, transport, f"the token's {what}"))

    def _release_bay(self) -> None:
        if getattr(self, "_bay_lock", None) is not None:
            self._bay_lock.close()
            self._bay_lock = None

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Close open management connections so their handlers end normally (cancelling a
        # stream handler makes Python 3.11 log a spurious error); cancel only stragglers.
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            _, late = await asyncio.wait(list(self._connections), timeout=2)
            for task in late:
                task.cancel()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._dirty.is_set():
            with contextlib.suppress(OSError):  # logged by _persist; nothing more to do at stop
                await self._persist()
        if self._server is not None:
            await self._server.wait_closed()
        if self._lan is not None:
            self.counters.send_failures = self._lan.send_failures
            self._lan.close()
        self._release_bay()

    # --- reset button (physical) ------------------------------------------

    async def press_reset(self) -> None:
        await self._apply(self.token.press_reset(), durable=True)

    async def wipe(self) -> None:
        await self._apply(self.token.wipe(), durable=True)

    # --- internals ------------------------------------------------------

    def _send(self, t: Transmit) -> None:
        assert self._lan is not None
        to = (self.config.broadcast, self.config.drive_lan_port) if t.is_broadcast else t.to
        self._lan.sendto(t.data, to)
        self.counters.datagrams_out += 1
        if self._tap:
            self._tap("out", "udp", (self.config.ip, self.config.lan_port), to, t.data)

    async def _apply(self, out: Output, *, durable: bool = False) -> None:
        """``durable``: on disk before anything is sent (a management reply says "written")."""
        if out.persist and durable:
            await self._persist()
        self._emit(out, written=durable)

    def _emit(self, out: Output, *, written: bool = False) -> None:
        """Send and report what the token decided; a change of state not ``written`` yet is
        written behind (coalesced)."""
        if out.persist and not written:
            self._dirty.set()
        for t in out.sends:
            self._send(t)
        for event in out.events:
            self.counters.events[type(event).__name__] += 1
            log.debug("token %s: %s", self.config.ip, event)
            if isinstance(event, (ErrorIgnored, AnswerThrottled)):  # a flood: one summary line per interval
                self._lan_reasons.note(type(event).__name__, f"token {self.config.ip}: {_dropped(event)}")
            for sink in self._sinks:
                sink(event)
        if self._publisher is not None and (out.persist or out.events):
            self._publish(out)

    def _publish(self, out: Output) -> None:
        """State (retained, coalesced) and the errors drives report (the alerts)."""
        from events import token_event, token_state
        from protocol.pcap import describe

        assert self._publisher is not None
        self._publisher.state(token_state(self._site, self.config.ip), lambda: describe(self.token.status()) | (
            {"persist_error": self.persist_error} if self.persist_error else {}))
        for event in out.events:
            if isinstance(event, ErrorRecorded):
                self._publisher.event(token_event(self._site, self.config.ip),
                                      {"type": "ErrorRecorded", "token": self.config.ip} | describe(event.error))

    async def _persist(self) -> None:
        """Write the token's state; an OSError (disk full, permission...) is logged, counted
        and raised, and the state stays dirty so the write-behind task retries it."""
        # Snapshot in the loop (consistent), write in a thread (no blocking).
        async with self._persist_lock:
            self._dirty.clear()
            snapshot = self._memory.snapshot(self.token.memory)
            try:
                await asyncio.to_thread(self._memory.write, *snapshot)
            except OSError as exc:
                self._dirty.set()
                self.counters.persist_failures += 1
                error = f"token state {self.config.state_dir / IMAGE_NAME} cannot be written: {exc}"
                if error != self.persist_error:  # once per distinct error, not once per retry
                    log.error("token %s: %s; writes from the KMS are refused until it can", self.config.ip, error)
                self.persist_error = error
                raise
            if self.persist_error is not None:
                log.warning("token %s: state written again to %s after %d failed attempt(s)",
                            self.config.ip, self.config.state_dir / IMAGE_NAME, self.counters.persist_failures)
                self.persist_error = None

    async def _write_behind(self) -> None:
        """Coalesce LAN-driven changes: one write per interval, however many acknowledgements;
        a failed write is retried with backoff until the disk works again."""
        delay = self.config.persist_interval_s
        while True:
            await self._dirty.wait()
            try:
                await self._persist()
                delay = self.config.persist_interval_s
            except OSError:
                delay = min(max(delay, self.config.persist_interval_s) * 2, self.config.persist_backoff_max_s)
            await asyncio.sleep(delay)

    def _receive_batch(self, batch: list[Datagram]) -> None:
        """What one wake-up of the LAN socket read (at most ``lan_batch`` datagrams), handled at once."""
        self.counters.datagrams_in += len(batch)
        now = now_us()
        for data, addr in batch:
            if self._tap:
                self._tap("in", "udp", addr, (self.config.ip, self.config.lan_port), data)
            try:
                frame = decode(data)
            except DecodeError as exc:
                self.counters.decode_errors[exc.reason.name] += 1
                self._lan_reasons.note(exc.reason.name, f"token {self.config.ip}: dropped datagram from {addr[0]}:{addr[1]}: {exc}")
                continue
            try:
                self._emit(self.token.receive_lan(frame, addr, now))
            except Exception:  # a bug must not stop the token serving
                log.exception("token %s: error handling %s", self.config.ip, frame.message.TYPE.name)

    async def _announce_forever(self) -> None:
        """Every announce_interval_s, and soon again after a write (announce_repeats_s)."""
        gaps: list[float] = []
        while True:
            self._announced_write.clear()
            try:
                await asyncio.wait_for(self._announced_write.wait(), gaps.pop(0) if gaps else self.config.announce_interval_s)
                gaps = list(self.config.announce_repeats_s)  # a write was just announced: repeat it soon
                continue
            except TimeoutError:
                pass
            announcement = self.token.announcement()
            if announcement is not None:
                self._send(announcement)

    async def _management(self, data: bytes, message_type: MessageType, sequence: int) -> tuple[bytes | None, bool]:
        """Apply one management request; its reply goes only once what it says is on disk.

        The MAC and counter are checked over the raw octets before any parse. A write (or
        error clear) the token cannot persist is undone and refused, naming the state file
        and the OS error; other requests are answered and their state retried. Returns the
        reply and whether the peer was refused (it gets no second try)."""
        changes = message_type in (MessageType.WRITE_EKT, MessageType.WRITE_OKT, MessageType.CLEAR_ERROR,
                                   MessageType.RESYNC)
        before = self.token.memory.checkpoint() if changes else None
        out = self.token.receive_management_bytes(data, now_us())
        refused = any(isinstance(e, ManagementRefused) for e in out.events)
        try:
            await self._apply(out, durable=True)  # persisted before the reply says "written"
        except OSError:
            if before is None or refused:
                await self._apply(out)  # nothing acknowledged that is not on disk: answer, retry the write
                return out.reply, refused
            counter = self.token.memory.mgmt_counter  # the request's: accepted, then undone
            self.token = Token(before, self.config.secret)  # as before the request: nothing half-done
            self._dirty.set()
            why = f"{message_type.name} not applied: {self.persist_error}"
            log.warning("token %s: refused %s", self.config.ip, why)
            return encode_authenticated(MgmtResult(MgmtStatus.REFUSED, why), secret=self.config.secret,
                                        counter=counter, sequence=sequence, reply=True), False
        if any(t.message_type is MessageType.KEYS_AVAILABLE for t in out.sends):
            self._announced_write.set()
        return out.reply, refused

    async def _handle_mgmt(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        refused = self._gate.admit(peer[0])
        if refused is not None:  # over a cap: closed at once, counted
            self._reasons.note(refused, f"token {self.config.ip}: management connection from {peer[0]} refused")
            writer.close()
            return
        local = (self.config.ip, self.config.mgmt_port)
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), self.config.mgmt_idle_timeout_s)
                except asyncio.IncompleteReadError:
                    return  # peer closed between requests
                info = decode_header(header)
                cap = body_cap(info.message_type)
                if info.body_length > cap:  # refused from the header alone: the body is never read
                    raise DecodeError(DecodeReason.TOO_LARGE, f"{info.message_type.name} body of "
                                      f"{info.body_length} octets exceeds its cap of {cap}")
                data = header + await read_bounded(reader, info.remaining, self.config.mgmt_body_timeout_s)
                if self._tap:
                    self._tap("in", "tcp", peer, local, data)
                # Paused until the answer is handed to the socket: the collector's pass over what a
                # write made then comes after the answer, not before it.
                with collector_paused():
                    reply, refused = await self._management(data, info.message_type, info.sequence)
                    if reply is not None:
                        writer.write(reply)
                if reply is not None:
                    await writer.drain()
                    if self._tap:
                        self._tap("out", "tcp", local, peer, reply)
                if refused:
                    return  # a peer that failed authentication or replayed gets no second try on this connection
        except DecodeError as exc:
            self.counters.decode_errors[exc.reason.name] += 1
            self._reasons.note(exc.reason.name,
                               f"token {self.config.ip}: closing management connection from {peer[0]}: {exc}")
        except (asyncio.TimeoutError, TimeoutError):
            self._reasons.note("idle_timeout", f"token {self.config.ip}: management connection from {peer[0]} timed out")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            self._reasons.note("cut_short", f"token {self.config.ip}: management connection from {peer[0]} ended: {exc}")
        finally:
            self._gate.release(peer[0])
            self._connections.pop(task, None)
            writer.close()


def _dropped(event: ErrorIgnored | AnswerThrottled) -> str:
    if isinstance(event, ErrorIgnored):
        return f"error report about CSN {event.csn.hex()} dropped: {event.why}"
    return f"key request for CSN {event.csn.hex()} dropped: over its answer budget"


def read_secret_file(path: Path) -> bytes:
    from .errors import ConfigError

    try:
        return read_hex_file(path, TOKEN_SECRET_SIZE)
    except OSError as exc:
        raise ConfigError(f"cannot read the token secret file {path}: {exc}") from None
    except ValueError as why:
        raise ConfigError(f"{path} must hold the token secret as {2 * TOKEN_SECRET_SIZE} hex digits "
                          f"({why}; it comes from 't10k kms add-token')") from None


async def run_token(config: TokenConfig, *, stop: asyncio.Event | None = None, tap: Tap | None = None) -> None:
    """Run until ``stop`` is set (the CLI sets it on SIGINT/SIGTERM)."""
    stop = stop or asyncio.Event()
    async with TokenService(config, tap=tap):
        await stop.wait()


