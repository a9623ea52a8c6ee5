"""The asyncio shell of a drive's iSCSI target: a listening portal moving bytes.

Each connection is a ``BufferedProtocol`` receiving straight into its PDU reader's
buffer; the sans-I/O :class:`TargetConnection` decides everything else. The portal owns
the idle timer (a NOP-In ping, then a close), the per-connection buffer cap (reading
pauses while replies wait to be written) and the tap that lets ``--capture`` record
iSCSI like every other drive listener.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from typing import Callable, Iterable

from .config import IscsiConfig
from .lun import ScsiLun
from .target import State, TargetConnection

log = logging.getLogger("t10k.iscsi")

#: tap(direction "in"/"out", src (ip, port), dst (ip, port), bytes)
Tap = Callable[[str, tuple[str, int], tuple[str, int], bytes], None]
OutputHandler = Callable[[object], None]

SOCKET_BUFFER = 4 * 1024 * 1024


#: The portal serving a connection accepted at (local ip, port); None: no target there.
Route = Callable[[tuple[str, int]], "IscsiPortal | None"]


class _Connection(asyncio.BufferedProtocol):
    def __init__(self, route: Route) -> None:
        self._route = route  # a portal's own listener answers itself; a shared one, the portal at the address
        self.portal: IscsiPortal
        self.conn: TargetConnection
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] = ("?", 0)
        self._view: memoryview | None = None
        self.registered = ""  # the nexus this connection's session holds in portal.sessions

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.peer = transport.get_extra_info("peername") or ("?", 0)
        portal = self._route(transport.get_extra_info("sockname") or ("?", 0))
        if portal is None:  # a shared listener, and no target at that address: closed at once (counted by route)
            transport.abort()
            return
        self.portal, self.transport = portal, transport
        self.conn = TargetConnection(portal.config, portal.lun, portal=(portal.host, portal.port))
        self.last_heard = portal.clock()
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # the write buffer plus one PDU being received is all a connection holds
        transport.set_write_buffer_limits(high=max(self.portal.config.max_buffered_bytes
                                                   - self.portal.config.max_recv_data_segment, 64 * 1024))
        self.portal.connections.add(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        self._view = self.conn.reader.get_buffer(sizehint)
        return self._view

    def buffer_updated(self, nbytes: int) -> None:
        if self.portal.tap is not None and self._view is not None:
            self.portal.tap("in", self.peer, self.portal.local, bytes(self._view[:nbytes]))
        self._view = None
        self.conn.reader.buffer_updated(nbytes)
        now = self.portal.clock()
        self.last_heard = now
        try:
            self.conn.process(now)
        except Exception:  # a bug of ours must cost one connection, never the portal
            log.exception("iSCSI target %s: closing the connection from %s", self.portal.local, self.peer)
            self.portal.errors["INTERNAL_ERROR"] += 1
            self.conn.closing = True
        if self.conn.nexus and not self.registered and not self.conn.discovery:
            self.registered = self.conn.nexus
            self.portal.reinstate(self)
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None:
            return
        for output in self.conn.take_outputs():
            if self.portal.on_output is not None:
                self.portal.on_output(output)
        for piece in self.conn.data_to_send():
            if self.portal.tap is not None:
                self.portal.tap("out", self.portal.local, self.peer, bytes(piece))
            transport.write(piece)
        if self.conn.errors:
            self.portal.errors.update(self.conn.errors)
            self.conn.errors.clear()
        if self.conn.closing and not transport.is_closing():
            if self.conn.close_reason and self.conn.close_reason != "logout":
                log.info("iSCSI target %s: closing the connection from %s: %s", self.portal.local, self.peer,
                         self.conn.close_reason)
            transport.close()

    def pause_writing(self) -> None:
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:  # never routed to a portal
            return
        self.portal.connections.discard(self)
        if self.registered and self.portal.sessions.get(self.registered) is self:
            del self.portal.sessions[self.registered]
        self.conn.connection_lost()
        self.transport = None

    def tick(self, now: float) -> None:
        """Called by the portal's timer: ping an idle connection, close a dead one."""
        idle = now - self.last_heard
        timeout = self.portal.config.idle_timeout_s
        if self.transport is None or idle < timeout / 2:
            return
        if self.conn.state is State.FULL_FEATURE and idle < timeout:
            self.conn.ping(now)
            self.flush()
            return
        if idle >= timeout:
            self.portal.errors["IDLE_TIMEOUT"] += 1
            self.transport.close()


class IscsiPortal:
    """A target portal at (host, port) serving one LUN; ``async with`` it, or start/close."""

    def __init__(self, config: IscsiConfig, lun: ScsiLun, *, host: str, on_output: OutputHandler | None = None,
                 tap: Tap | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config, self.lun, self.host, self.port = config, lun, host, config.port
        self.on_output, self.tap, self.clock = on_output, tap, clock
        self.connections: set[_Connection] = set()
        #: the logged-in normal sessions by I_T nexus (initiator name and ISID)
        self.sessions: dict[str, _Connection] = {}
        #: malformed PDUs, refused logins, dropped commands... by reason, over every connection
        self.errors: collections.Counter[str] = collections.Counter()
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None

    @property
    def local(self) -> tuple[str, int]:
        return (self.host, self.port)

    def reinstate(self, new: _Connection) -> None:
        """A login completed: the same initiator name and ISID replace an older session
        (RFC 7143 6.3.5, session reinstatement): the old one's nexus ends first."""
        nexus = new.conn.nexus
        old = self.sessions.get(nexus)
        if old is not None and old is not new:
            self.errors["SESSION_REINSTATED"] += 1
            old.conn.connection_lost()
            if old.transport is not None:
                old.transport.abort()
        self.sessions[nexus] = new

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(lambda local: self), self.host, self.config.port,
                                                backlog=self.config.backlog, reuse_address=True)
        if self.config.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._timer = asyncio.create_task(idle_ticks([self], self.config.idle_timeout_s, self.clock),
                                          name=f"iscsi-idle-{self.host}")

    def served_at(self, port: int) -> None:
        """A shared listener (listener.IscsiListener) accepts this portal's connections on ``port``."""
        self.port = port

    @property
    def serving(self) -> bool:
        """Its own listener and idle timer are running (a portal a shared listener serves has neither)."""
        return (self._server is not None and self._server.is_serving()
                and self._timer is not None and not self._timer.done())

    async def close(self) -> None:
        await stop_idle_ticks(self._timer)
        if self._server is not None:
            self._server.close()
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> IscsiPortal:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def stop_idle_ticks(timer: asyncio.Task[None] | None) -> None:
    """Cancel an :func:`idle_ticks` task (a portal's own, or a shared listener's) and wait for it."""
    if timer is not None:
        timer.cancel()
        try:
            await timer
        except asyncio.CancelledError:
            pass


async def idle_ticks(portals: Iterable[IscsiPortal], idle_timeout_s: float, clock: Callable[[], float]) -> None:
    """For ever: ping each idle connection of these portals, close each dead one."""
    period = max(idle_timeout_s / 4, 0.05)
    while True:
        await asyncio.sleep(period)
        now = clock()
        for portal in list(portals):
            for connection in list(portal.connections):
                connection.tick(now)
