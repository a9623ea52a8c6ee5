"""The token's drive-LAN socket: datagrams read in bounded batches, one batch per wake-up.

asyncio's datagram transport reads one datagram each time the selector says the socket is
readable, so a pool's burst of KEY_REQUESTs costs one event-loop iteration (and, behind a
queue, one task switch) per datagram. Here the reader drains up to ``batch`` datagrams per
wake-up with non-blocking ``recvfrom`` and hands them over as one list; sends go straight
to ``sendto`` and only wait in a bounded backlog when the kernel's send buffer is full.
It moves bytes and nothing else.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Callable

from protocol.constants import MAX_DATAGRAM

log = logging.getLogger("t10k.token")

Datagram = tuple[bytes, tuple[str, int]]


class LanSocket:
    def __init__(self, sock: socket.socket, on_batch: Callable[[list[Datagram]], None], *, batch: int,
                 backlog: int) -> None:
        self._sock = sock
        self._on_batch = on_batch
        self._batch = batch
        self._backlog: collections.deque[Datagram] = collections.deque()
        self._backlog_max = backlog
        self._loop = asyncio.get_running_loop()
        self._writing = False
        self._closed = False
        #: Datagrams not sent: the backlog was full, or the kernel refused them.
        self.send_failures = 0
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        batch: list[Datagram] = []
        recvfrom = self._sock.recvfrom
        for _ in range(self._batch):
            try:
                batch.append(recvfrom(MAX_DATAGRAM))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. an ICMP error reported on the socket: nothing to read
                log.debug("LAN socket error: %s", exc)
                break
        if batch:
            self._on_batch(batch)

    def sendto(self, data: bytes, to: tuple[str, int]) -> None:
        if self._closed:
            return
        if not self._backlog:
            try:
                self._sock.sendto(data, to)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:  # unreachable, no buffer space...: UDP is lossy, the drive retries
                self.send_failures += 1
                log.debug("LAN send to %s:%d failed: %s", to[0], to[1], exc)
                return
        if len(self._backlog) >= self._backlog_max:
            self.send_failures += 1
            return
        self._backlog.append((data, to))
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._sock.fileno(), self._writable)

    def _writable(self) -> None:
        while self._backlog:
            data, to = self._backlog[0]
            try:
                self._sock.sendto(data, to)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.send_failures += 1
                log.debug("LAN send to %s:%d failed: %s", to[0], to[1], exc)
            self._backlog.popleft()
        self._writing = False
        self._loop.remove_writer(self._sock.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._sock.fileno())
        if self._writing:
            self._loop.remove_writer(self._sock.fileno())
        self._backlog.clear()
        self._sock.close()
