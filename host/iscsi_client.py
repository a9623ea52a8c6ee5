"""An asyncio iSCSI initiator: ``async with IscsiClient(ip) as c: await c.execute(cdb)``.

The shell around :class:`host.iscsi_initiator.InitiatorConnection`: it owns the socket
(an asyncio ``BufferedProtocol`` receiving straight into the PDU reader's buffer), the
timeouts and one future per outstanding command. Commands may be issued concurrently;
the target sees them in order.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from protocol.constants import ISCSI_INITIATOR_IQN, ISCSI_PORT
from protocol.iscsi import IscsiDecodeError, IscsiError, LogoutReason, TmfFunction
from protocol.iscsi.errors import ProtocolError

from .iscsi_initiator import (
    CommandComplete,
    Event,
    InitiatorConnection,
    LoginComplete,
    LogoutComplete,
    NopComplete,
    Rejected,
    ScsiReply,
    TextComplete,
    TmfComplete,
)

SOCKET_BUFFER = 4 * 1024 * 1024


class IscsiClientError(Exception):
    """The session failed: the message says why (socket, login, protocol or timeout)."""


class _Protocol(asyncio.BufferedProtocol):
    def __init__(self, client: IscsiClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        transport.set_write_buffer_limits(high=SOCKET_BUFFER)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.client.conn.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.client.conn.reader.buffer_updated(nbytes)
        self.client._pump()

    def eof_received(self) -> bool:
        self.client._fail(IscsiClientError("the target closed the connection"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._fail(IscsiClientError(f"connection lost: {exc or 'closed'}"))
        self._can_write.set()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()


class IscsiClient:
    """One iSCSI session with one target (discovered first when ``target`` is None)."""

    def __init__(self, host: str, port: int = ISCSI_PORT, *, target: str | None = None,
                 initiator: str = ISCSI_INITIATOR_IQN, chap: tuple[str, str] | None = None,
                 digests: bool = False, timeout: float = 10.0, mutual_chap: tuple[str, str] | None = None,
                 offer: dict[str, str] | None = None, lun: int = 0) -> None:
        self.host, self.port, self.target, self.initiator = host, port, target, initiator
        self.chap, self.mutual_chap, self.digests, self.timeout = chap, mutual_chap, digests, timeout
        self.offer, self.lun = offer, lun
        self.conn: InitiatorConnection = InitiatorConnection(initiator=initiator, target=target, offer=offer)
        self._proto: _Protocol | None = None
        self._waiters: dict[int, asyncio.Future[Any]] = {}
        self._login: asyncio.Future[LoginComplete] | None = None
        self._error: Exception | None = None

    # --- session ----------------------------------------------------------------------

    async def __aenter__(self) -> IscsiClient:
        if self.target is None:
            found = await discover(self.host, self.port, initiator=self.initiator, timeout=self.timeout)
            if not found:
                raise IscsiClientError(f"{self.host}:{self.port} offers no target")
            self.target = found[0][0]
        self.conn = InitiatorConnection(initiator=self.initiator, target=self.target, chap=self.chap,
                                        mutual_chap=self.mutual_chap, digests=self.digests, offer=self.offer)
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            if self._error is None and self._proto is not None:
                itt = self.conn.send_logout(LogoutReason.CLOSE_SESSION)
                await self._wait(itt)
        except (IscsiClientError, ProtocolError):
            pass
        finally:
            self.close()

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self), self.host, self.port), self.timeout)
        except (OSError, asyncio.TimeoutError) as exc:
            raise IscsiClientError(f"cannot connect to iSCSI target {self.host}:{self.port}: {exc}") from None
        self._proto = proto
        self._login = loop.create_future()
        self.conn.start_login()
        self._flush()
        try:
            done = await asyncio.wait_for(asyncio.shield(self._login), self.timeout)
        except asyncio.TimeoutError:
            self.close()
            raise IscsiClientError(f"login to {self.host}:{self.port} timed out after {self.timeout} s") from None
        except BaseException:
            self.close()
            raise
        self.params = done.params

    def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._fail(IscsiClientError("the session is closed"))

    # --- commands ---------------------------------------------------------------------

    async def execute(self, cdb: bytes, *, data_out: bytes | memoryview | None = None,
                      expected_in: int = 0) -> ScsiReply:
        """Run one SCSI command on the LUN; the reply has status, data, sense and residual."""
        itt = self._call(lambda: self.conn.send_command(cdb, data_out=data_out, expected_in=expected_in,
                                                        lun=self.lun))
        assert self._proto is not None
        if not self._proto._can_write.is_set():
            await self._proto._can_write.wait()
        return await self._wait(itt)

    async def text(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return await self._wait(self._call(lambda: self.conn.send_text(pairs)))

    async def nop(self, data: bytes = b"") -> bytes:
        return await self._wait(self._call(lambda: self.conn.send_nop(data)))

    async def task_management(self, function: TmfFunction, referenced_tag: int | None = None) -> int:
        """Send a TMF request; returns the target's response code (TmfResult)."""
        from protocol.iscsi import RESERVED_TAG
        tag = RESERVED_TAG if referenced_tag is None else referenced_tag
        return await self._wait(self._call(lambda: self.conn.send_tmf(function, referenced_tag=tag, lun=self.lun)))

    def _call(self, send: Any) -> int:
        if self._error is not None:
            raise IscsiClientError(str(self._error))
        try:
            itt = send()
        except ProtocolError as exc:
            raise IscsiClientError(str(exc)) from None
        self._waiters[itt] = asyncio.get_running_loop().create_future()
        self._flush()
        return itt

    async def _wait(self, itt: int) -> Any:
        future = self._waiters.get(itt)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._waiters[itt] = future
            self._flush()
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            self._waiters.pop(itt, None)
            raise IscsiClientError(f"no answer from {self.host}:{self.port} in {self.timeout} s "
                                   f"(task 0x{itt:08x})") from None

    # --- the machinery ----------------------------------------------------------------

    def _flush(self) -> None:
        out = self.conn.data_to_send()
        if out and self._proto is not None and self._proto.transport is not None:
            transport = self._proto.transport
            for piece in out:
                transport.write(piece)

    def _pump(self) -> None:
        try:
            while True:
                event = self.conn.next_event()
                if event is None:
                    break
                self._dispatch(event)
        except (IscsiError, IscsiDecodeError) as exc:
            self._fail(IscsiClientError(f"iSCSI session with {self.host}:{self.port} failed: {exc}"))
            if self._proto is not None and self._proto.transport is not None:
                self._proto.transport.close()
        self._flush()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, LoginComplete):
            if self._login is not None and not self._login.done():
                self._login.set_result(event)
            return
        value: Any
        if isinstance(event, CommandComplete):
            value = event.reply
        elif isinstance(event, TextComplete):
            value = event.pairs
        elif isinstance(event, NopComplete):
            value = event.data
        elif isinstance(event, (TmfComplete, LogoutComplete)):
            value = event.response
        elif isinstance(event, Rejected):
            future = self._waiters.pop(event.itt, None)
            if future is not None and not future.done():
                future.set_exception(IscsiClientError(f"the target rejected the request (reason 0x{event.reason:02x})"))
            return
        else:
            return
        future = self._waiters.pop(event.itt, None)
        if future is not None and not future.done():
            future.set_result(value)

    def _fail(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        for future in [self._login, *self._waiters.values()]:
            if future is not None and not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody may be waiting any more
        self._waiters.clear()


async def discover(host: str, port: int = ISCSI_PORT, *, initiator: str = ISCSI_INITIATOR_IQN,
                   timeout: float = 10.0) -> list[tuple[str, str]]:
    """The (target name, portal "ip:port,tpgt") pairs a SendTargets discovery session lists."""
    client = IscsiClient(host, port, target=None, initiator=initiator, timeout=timeout)
    await client._open()
    try:
        pairs = await client.text([("SendTargets", "All")])
    finally:
        await client.__aexit__(None, None, None)
    found: list[tuple[str, str]] = []
    name = None
    for key, value in pairs:
        if key == "TargetName":
            name = value
        elif key == "TargetAddress" and name is not None:
            found.append((name, value))
    for key, value in pairs:  # a target listed without an address is reached where we asked
        if key == "TargetName" and all(n != value for n, _ in found):
            found.append((value, f"{host}:{port},1"))
    return found


__all__ = ["IscsiClient", "IscsiClientError", "ScsiReply", "discover"]
