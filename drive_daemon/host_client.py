"""A client of a drive's host interface: what a backup application would be.

Commands return their result or raise :class:`CheckCondition` (with the sense data and,
for a missing key, the key ID). Writes and counted reads can be pipelined: up to
``window`` requests in flight, so the round trip does not bound throughput.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import AsyncIterator, Callable, Iterable

from protocol import (
    BlockData,
    DecodeError,
    HeaderInfo,
    EncryptionStatus,
    EncryptionStatusRequest,
    Erase,
    HostResult,
    Load,
    Locate,
    Message,
    Position,
    ReadBlock,
    ReadPosition,
    Rewind,
    Space,
    Unload,
    WriteFilemarks,
    decode,
    encode,
    frame_header,
)
from protocol.constants import HOST_PORT, MAX_BLOCK_SIZE, HostStatus, MessageType, SpaceUnit
from protocol.sense import Condition, SenseProfile, sense_for

from .errors import DriveDaemonError
from .framing import MAX_HOST_FRAME, FramedProtocol


class HostInterfaceError(DriveDaemonError):
    """The drive could not be reached or answered nonsense."""


class CheckCondition(DriveDaemonError):
    """The drive ended a command with CHECK CONDITION."""

    def __init__(self, result: HostResult) -> None:
        key = f", key ID {result.key_id.hex()}" if any(result.key_id) else ""
        super().__init__(f"{result.message} (sense {result.sense}{key}, at block {result.position})")
        self.result = result

    @property
    def sense(self):  # type: ignore[no-untyped-def]
        return self.result.sense

    def is_condition(self, condition: Condition) -> bool:
        return any(self.result.sense == sense_for(condition, p) for p in SenseProfile)


class _ClientProtocol(FramedProtocol):
    def __init__(self) -> None:
        super().__init__(self._frame, max_remaining=MAX_HOST_FRAME)
        self.replies: asyncio.Queue[Message | Exception] = asyncio.Queue()

    def _frame(self, info: HeaderInfo, header: bytes, body: memoryview) -> None:
        if info.message_type is MessageType.BLOCK_DATA:
            self.replies.put_nowait(BlockData(bytes(body)))  # the body is the block: no parse
            return
        try:
            self.replies.put_nowait(decode(header + bytes(body)).message)
        except DecodeError as exc:
            self.protocol_error(exc)

    def protocol_error(self, exc: DecodeError) -> None:
        self.replies.put_nowait(exc)
        super().protocol_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.replies.put_nowait(ConnectionError(str(exc) if exc else "the drive closed the connection"))
        super().connection_lost(exc)


class HostClient:
    def __init__(self, ip: str, *, port: int = HOST_PORT, timeout_s: float = 60.0) -> None:
        self.ip, self.port, self.timeout_s = ip, port, timeout_s
        self._protocol: _ClientProtocol | None = None
        self._sequence = 0

    async def __aenter__(self) -> HostClient:
        loop = asyncio.get_running_loop()
        try:
            _, self._protocol = await asyncio.wait_for(
                loop.create_connection(_ClientProtocol, self.ip, self.port), self.timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise HostInterfaceError(f"cannot connect to the drive's host interface at {self.ip}:{self.port} "
                                     f"({exc or 'timed out'}); is a drive running there?") from None
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
            await asyncio.wait_for(asyncio.shield(self._protocol.closed), 5)

    # --- framing -----------------------------------------------------------

    @property
    def _wire(self) -> _ClientProtocol:
        assert self._protocol is not None, "use 'async with HostClient(...)'"
        return self._protocol

    def _send(self, message: Message) -> None:
        self._sequence = (self._sequence + 1) % 2**32
        self._wire.write(encode(message, sequence=self._sequence))

    def _send_block(self, data: bytes | memoryview) -> None:
        self._sequence = (self._sequence + 1) % 2**32
        self._wire.write(frame_header(MessageType.WRITE_BLOCK, len(data), sequence=self._sequence), data)

    async def _drain(self) -> None:
        await self._wire.drain()

    async def _receive(self) -> Message:
        try:
            reply = await asyncio.wait_for(self._wire.replies.get(), self.timeout_s)
        except asyncio.TimeoutError:
            raise HostInterfaceError(f"the drive at {self.ip}:{self.port} did not answer in {self.timeout_s} s") \
                from None
        if isinstance(reply, DecodeError):
            raise HostInterfaceError(f"the drive at {self.ip}:{self.port} sent an invalid reply: {reply}")
        if isinstance(reply, Exception):
            raise HostInterfaceError(f"the drive at {self.ip}:{self.port} stopped answering ({reply})")
        return reply

    @staticmethod
    def _checked(reply: Message) -> Message:
        if isinstance(reply, HostResult) and reply.status is HostStatus.CHECK_CONDITION:
            raise CheckCondition(reply)
        return reply

    async def _call(self, message: Message) -> Message:
        self._send(message)
        await self._drain()
        return self._checked(await self._receive())

    # --- commands ------------------------------------------------------------

    async def load(self, volser: str) -> None:
        await self._call(Load(volser))

    async def unload(self) -> None:
        await self._call(Unload())

    async def rewind(self) -> None:
        await self._call(Rewind())

    async def write(self, data: bytes) -> None:
        self._send_block(data)
        await self._drain()
        self._checked(await self._receive())

    async def write_filemarks(self, count: int = 1) -> None:
        await self._call(WriteFilemarks(count))

    async def locate(self, block: int) -> None:
        await self._call(Locate(block))

    async def space(self, unit: SpaceUnit, count: int) -> None:
        await self._call(Space(unit, count))

    async def read(self, max_length: int = MAX_BLOCK_SIZE) -> bytes:
        reply = await self._call(ReadBlock(max_length))
        assert isinstance(reply, BlockData)
        return reply.data

    async def erase(self) -> None:
        await self._call(Erase())

    async def position(self) -> Position:
        reply = await self._call(ReadPosition())
        assert isinstance(reply, Position)
        return reply

    async def encryption_status(self) -> EncryptionStatus:
        reply = await self._call(EncryptionStatusRequest())
        assert isinstance(reply, EncryptionStatus)
        return reply

    # --- pipelined transfers ----------------------------------------------------

    async def write_blocks(self, blocks: Iterable[bytes | memoryview], *, window: int = 8,
                           progress: Callable[[int], None] | None = None) -> int:
        """Write blocks with up to ``window`` in flight; returns the number written.
        The first CHECK CONDITION stops the transfer; it is raised once every reply is in."""
        in_flight: deque[int] = deque()
        written, failure = 0, None

        async def settle() -> None:
            nonlocal written, failure
            size = in_flight.popleft()
            try:
                self._checked(await self._receive())
            except CheckCondition as cc:
                failure = failure or cc
                return
            written += 1
            if progress:
                progress(size)

        for data in blocks:
            if failure is not None:
                break
            self._send_block(data)
            in_flight.append(len(data))
            await self._drain()
            if len(in_flight) >= window:
                await settle()
        while in_flight:
            await settle()
        if failure is not None:
            raise failure
        return written

    async def read_blocks(self, count: int, *, window: int = 8, max_length: int = MAX_BLOCK_SIZE
                          ) -> AsyncIterator[bytes]:
        """Read exactly ``count`` blocks, pipelined (the caller knows how many: never past a filemark).
        On CHECK CONDITION the replies still in flight are collected, then it is raised."""
        sent = received = 0
        while received < count:
            while sent < count and sent - received < window:
                self._send(ReadBlock(max_length))
                sent += 1
            await self._drain()
            reply = await self._receive()
            received += 1
            if isinstance(reply, HostResult) and reply.status is HostStatus.CHECK_CONDITION:
                for _ in range(sent - received):
                    await self._receive()
                raise CheckCondition(reply)
            assert isinstance(reply, BlockData)
            yield reply.data
