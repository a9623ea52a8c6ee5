"""The shared UDP socket of a drive host: every drive's datagrams on one socket, each at its own address.

One socket bound to (0.0.0.0, DRIVE_PORT) with IP_PKTINFO: the kernel says, for each datagram,
the address it was sent to (the drive it is for), and each drive's datagrams leave with its
own address as their source (``ipi_spec_dst`` of the control message sent with them). Read with
``recvmsg`` in bounded batches per event-loop wake-up (asyncio's DatagramTransport has no
recvmsg/sendmsg), written with ``sendmsg``; a full send buffer queues, bounded.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
from typing import Callable

from protocol.constants import MAX_DATAGRAM
from protocol.pktinfo import IP_PKTINFO, PKTINFO

log = logging.getLogger("t10k.drive")

Address = tuple[str, int]
DatagramHandler = Callable[[bytes, Address], None]
#: (service "udp"/"vop"/"iscsi", what happened): a datagram or connection for no drive of this host
Unrouted = Callable[[str, str], None]
#: ancillary data sent with a datagram: [(level, type, data)]
Control = list[tuple[int, int, bytes]]

WILDCARD = "0.0.0.0"
#: The shared UDP socket's receive buffer: 10,000 drives' replies arrive at once, ~4.5 KiB of
#: buffer each on loopback (2,000 drives overflowed 4 MiB: ~950 datagrams dropped, retries doubled).
#: Linux caps SO_RCVBUF at net.core.rmem_max (4 MiB here); with CAP_NET_ADMIN, SO_RCVBUFFORCE
#: sets this; without, the host gets rmem_max and warns below SHARED_RECEIVE_BUFFER_MIN.
SHARED_RECEIVE_BUFFER = 64 * 1024 * 1024
SHARED_RECEIVE_BUFFER_MIN = 4 * 1024 * 1024
#: Linux's SO_RCVBUFFORCE (level SOL_SOCKET), which Python 3.11's socket module lacks.
SO_RCVBUFFORCE = 33
#: Datagrams read per event-loop wake-up: a burst is drained without starving other work.
RECEIVE_BATCH = 256
#: Datagrams waiting for the shared socket to take them (a full send buffer); beyond, dropped, counted.
MAX_SEND_QUEUE = 65536
_ANCILLARY_SPACE = socket.CMSG_SPACE(PKTINFO.size)


def _receive_buffer(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` octets of receive buffer (forced past rmem_max if we may); what was granted."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2  # Linux reports double


class SharedDatagramSocket:
    """One UDP socket at (0.0.0.0, port) for every drive: IP_PKTINFO says which drive a datagram is
    for, and makes each drive's datagrams leave from its own address."""

    def __init__(self, port: int, on_unrouted: Unrouted, *, receive_buffer: int = SHARED_RECEIVE_BUFFER,
                 batch: int = RECEIVE_BATCH) -> None:
        self.port, self.on_unrouted, self.receive_buffer, self.batch = port, on_unrouted, receive_buffer, batch
        #: the drive's handler by its address (4 octets, network order)
        self.routes: dict[bytes, DatagramHandler] = {}
        self.dropped: collections.Counter[str] = collections.Counter()
        self._sock: socket.socket | None = None
        self._queue: collections.deque[tuple[bytes, Address, Control]] = collections.deque()
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Bind (0.0.0.0, port) and start reading; a failed bind raises its OSError."""
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            # No SO_REUSEADDR: the wildcard bind must fail, never share, where another socket has the port.
            granted = _receive_buffer(sock, self.receive_buffer)
            if granted < SHARED_RECEIVE_BUFFER_MIN:
                log.warning("drive host: shared UDP receive buffer is %d bytes, not %d (raise net.core.rmem_max, "
                            "or give the host CAP_NET_ADMIN): large pools will see retries", granted,
                            SHARED_RECEIVE_BUFFER_MIN)
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind((WILDCARD, self.port))
        except BaseException:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        sock, routes = self._sock, self.routes
        if sock is None:
            return
        for _ in range(self.batch):
            try:
                data, ancillary, _flags, addr = sock.recvmsg(MAX_DATAGRAM, _ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. an ICMP error queued on the socket: the next read goes on
                log.debug("drive host: shared LAN socket: %s", exc)
                return
            destination = b""
            for level, kind, cdata in ancillary:
                if level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                    destination = PKTINFO.unpack_from(cdata)[2]  # ipi_addr: the datagram's destination
            handler = routes.get(destination)
            if handler is None:
                self.dropped["no_drive_at_address"] += 1
                to = socket.inet_ntoa(destination) if len(destination) == 4 else "?"
                self.on_unrouted("udp", f"datagram from {addr[0]}:{addr[1]} to {to}:{self.port}")
                continue
            handler(data, addr)

    def send(self, data: bytes, to: Address, control: Control) -> bool:
        sock = self._sock
        if sock is None:
            return False
        if self._queue:  # behind datagrams waiting for room: keep the order
            return self._enqueue(data, to, control)
        try:
            sock.sendmsg([data], control, 0, to)
        except (BlockingIOError, InterruptedError):
            return self._enqueue(data, to, control)
        except OSError as exc:
            self.dropped["send_error"] += 1
            log.debug("drive host: sending to %s:%d failed: %s", to[0], to[1], exc)
            return False
        return True

    def _enqueue(self, data: bytes, to: Address, control: Control) -> bool:
        if len(self._queue) >= MAX_SEND_QUEUE:
            self.dropped["send_queue_full"] += 1
            return False
        if not self._queue and self._loop is not None and self._sock is not None:
            self._loop.add_writer(self._sock.fileno(), self._writable)
        self._queue.append((data, to, control))
        return True

    def _writable(self) -> None:
        sock = self._sock
        while sock is not None and self._queue:
            data, to, control = self._queue[0]
            try:
                sock.sendmsg([data], control, 0, to)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.dropped["send_error"] += 1
                log.debug("drive host: sending to %s:%d failed: %s", to[0], to[1], exc)
            self._queue.popleft()
        if sock is not None and self._loop is not None:
            self._loop.remove_writer(sock.fileno())

    @property
    def serving(self) -> bool:
        return self._sock is not None

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())
            sock.close()
        self._queue.clear()
