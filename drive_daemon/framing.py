"""Frames over TCP with asyncio's BufferedProtocol: each body is received in place.

asyncio streams copy every chunk into one buffer and slice it out again; for 256 KiB
blocks that caps loopback at ~420 MB/s here, where receiving into a buffer per frame
moves ~5 GB/s (docs/BENCHMARKS.md). Both sides of the host interface use this.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Callable

from protocol import DecodeError, DecodeReason, HeaderInfo, decode_header
from protocol.constants import HEADER_SIZE, MAX_BLOCK_SIZE

#: Kernel socket buffers holding several blocks, so sends rarely stop part-way.
SOCKET_BUFFER = 4 * MAX_BLOCK_SIZE

#: Largest frame either side of the host interface accepts: oversized blocks up to this are
#: read and refused cleanly; past it the connection is closed.
MAX_HOST_FRAME = 4 * MAX_BLOCK_SIZE

#: on_frame(info, header, body): ``body`` is a view of a buffer reused for the next frame,
#: valid only during the call (copy what must be kept).
FrameHandler = Callable[[HeaderInfo, bytes, memoryview], None]


class FramedProtocol(asyncio.BufferedProtocol):
    """Reassembles frames and hands each (header info, header, body) to ``on_frame``."""

    def __init__(self, on_frame: FrameHandler, *, max_remaining: int) -> None:
        self._on_frame = on_frame
        self._max_remaining = max_remaining
        self._header = bytearray(HEADER_SIZE)
        self._info: HeaderInfo | None = None
        self._buffer = bytearray()  # reused: a fresh 256 KiB buffer per block costs page faults
        self._body = memoryview(self._buffer)
        self._got = 0
        self.transport: asyncio.Transport | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()
        self.closed: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()

    # --- asyncio callbacks --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER)
        transport.set_write_buffer_limits(high=2 * MAX_BLOCK_SIZE)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._info is None:
            return memoryview(self._header)[self._got :]
        return self._body[self._got :]

    def buffer_updated(self, nbytes: int) -> None:
        self._got += nbytes
        if self._info is None:
            if self._got < HEADER_SIZE:
                return
            try:
                info = decode_header(bytes(self._header))
                if info.remaining > self._max_remaining:
                    raise DecodeError(DecodeReason.TOO_LARGE, f"{info.remaining} octets follow; at most "
                                                              f"{self._max_remaining} on this channel")
            except DecodeError as exc:
                self.protocol_error(exc)
                return
            if len(self._buffer) < info.remaining:
                self._body.release()
                self._buffer = bytearray(info.remaining)
            self._info, self._body, self._got = info, memoryview(self._buffer)[: info.remaining], 0
        if self._got < len(self._body):
            return
        info, header, body = self._info, bytes(self._header), self._body
        self._info, self._got = None, 0
        self._on_frame(info, header, body)

    def pause_writing(self) -> None:
        self._can_write.clear()
        if self.transport is not None:
            self.transport.pause_reading()  # a peer that does not read its replies gets no more service

    def resume_writing(self) -> None:
        self._can_write.set()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._can_write.set()
        if not self.closed.done():
            self.closed.set_result(exc)

    # --- for subclasses and users ------------------------------------------

    def protocol_error(self, exc: DecodeError) -> None:
        """The peer sent something that is not a frame: subclasses answer, then we close."""
        if self.transport is not None:
            self.transport.close()

    def write(self, *parts: bytes | bytearray | memoryview) -> None:
        assert self.transport is not None
        for part in parts:
            self.transport.write(part)

    async def drain(self) -> None:
        await self._can_write.wait()

