"""A drive host's sockets: three per drive (per-drive mode) or three for every drive (shared).

Each drive has its own static address, and on the wire it keeps it in both modes: it
receives at (its ip, DRIVE_PORT), sends from there, and its VOP and iSCSI target answer at
(its ip, VOP_PORT) and (its ip, ISCSI_PORT).

- **per-drive**: a UDP socket, a VOP listener and an iSCSI listener bound to each drive's
  address (3 file descriptors a drive). Other processes may hold the same ports on other
  addresses (several labs on one machine, tgt, a test suite beside a lab).
- **shared**: one UDP socket on (0.0.0.0, DRIVE_PORT) with IP_PKTINFO, which tells each
  datagram's destination address (the drive it is for) and lets each drive's datagrams
  leave from the drive's own address; one VOP and one iSCSI listener on the wildcard
  address, each connection routed by its local address. The descriptors no longer grow
  with the drives, but the host must own those ports on every address of its network
  namespace (a lab VM, or a namespace of its own).
- **auto**: per-drive while 3 descriptors a drive fit comfortably under the soft
  RLIMIT_NOFILE (half of it), shared beyond.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import resource
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Awaitable, Callable, Iterator, Protocol

from netcheck import bind_failure, is_bind_clash
from protocol.pktinfo import IP_PKTINFO, pktinfo_for_source

from .errors import BindError
from .shared_udp import WILDCARD, Address, DatagramHandler, SharedDatagramSocket, Unrouted

if TYPE_CHECKING:  # the iSCSI target is imported when a host starts, not by every `t10k` command
    from .iscsi import IscsiPortal

log = logging.getLogger("t10k.drive")

VopHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

#: File descriptors a drive holds in per-drive mode: its UDP socket, VOP and iSCSI listeners.
FDS_PER_DRIVE = 3
#: auto picks per-drive while the drives' descriptors take at most this share of the soft limit
#: (the rest: VOP and iSCSI connections, cartridges, NVRAM, captures).
AUTO_SHARE_OF_LIMIT = 0.5
#: Backlog of a shared TCP listener (the kernel caps it at net.core.somaxconn).
MAX_SHARED_BACKLOG = 4096


class SocketMode(str, enum.Enum):
    AUTO = "auto"
    PER_DRIVE = "per-drive"
    SHARED = "shared"


def choose_mode(mode: SocketMode, drives: int, soft_limit: int | None = None) -> tuple[SocketMode, str]:
    """The mode a host of ``drives`` drives runs in, and why (for the log)."""
    if mode is not SocketMode.AUTO:
        return mode, f"--sockets {mode.value} asked"
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    need = FDS_PER_DRIVE * drives
    if soft_limit == resource.RLIM_INFINITY or need <= soft_limit * AUTO_SHARE_OF_LIMIT:
        return SocketMode.PER_DRIVE, (f"{drives} drive(s) x {FDS_PER_DRIVE} descriptors = {need} fit under half "
                                      f"the open-file limit ({soft_limit})")
    return SocketMode.SHARED, (f"{drives} drive(s) x {FDS_PER_DRIVE} descriptors = {need} exceed half the "
                               f"open-file limit ({soft_limit}): one UDP socket and two listeners on {WILDCARD}")


@contextlib.contextmanager
def bind_errors(ip: str, port: int, transport: str, what: str, advice: str = "") -> Iterator[None]:
    """A failed bind becomes a BindError naming ip:port and the process holding it."""
    try:
        yield
    except OSError as exc:
        if not is_bind_clash(exc):
            raise
        raise BindError(bind_failure(exc, ip, port, transport, what) + advice) from None


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self, handler: DatagramHandler) -> None:
        self.handler = handler

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.handler(data, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("drive socket error: %s", exc)


@dataclass(frozen=True)
class DriveEndpoints:
    """What one drive serves at its address."""

    ip: str
    #: "drive 0123...": named in bind errors
    what: str
    on_datagram: DatagramHandler
    on_vop: VopHandler
    portal: IscsiPortal


class DriveLink(Protocol):
    """A drive's hold on its sockets: it sends its datagrams from its own address."""

    def send(self, data: bytes, to: Address) -> bool:
        """False when the datagram could not be handed to the kernel (closed, or dropped)."""

    @property
    def serving(self) -> bool: ...

    async def close(self) -> None: ...


class DriveSockets(Protocol):
    mode: SocketMode
    #: why this mode (logged at start)
    reason: str

    async def start(self) -> None: ...

    async def open(self, ends: DriveEndpoints) -> DriveLink: ...

    async def stop(self) -> None: ...


# --- per-drive ----------------------------------------------------------------


class _OwnLink:
    def __init__(self, transport: asyncio.DatagramTransport, vop: asyncio.Server | None,
                 portal: IscsiPortal | None) -> None:
        self.transport, self.vop, self.portal = transport, vop, portal

    def send(self, data: bytes, to: Address) -> bool:
        if self.transport.is_closing():
            return False
        self.transport.sendto(data, to)
        return True

    @property
    def serving(self) -> bool:
        return (not self.transport.is_closing() and self.vop is not None and self.vop.is_serving()
                and self.portal is not None and self.portal.serving)

    async def close(self) -> None:
        if self.portal is not None:
            await self.portal.close()
        if self.vop is not None:
            self.vop.close()
            await self.vop.wait_closed()
        self.transport.close()


class PerDriveSockets:
    """Each drive binds its own three sockets at its address (today's behaviour)."""

    mode = SocketMode.PER_DRIVE
    reason = ""

    def __init__(self, drive_port: int, vop_port: int, iscsi_port: int, vop_backlog: int) -> None:
        self.drive_port, self.vop_port, self.iscsi_port, self.vop_backlog = drive_port, vop_port, iscsi_port, vop_backlog

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def open(self, ends: DriveEndpoints) -> DriveLink:
        loop = asyncio.get_running_loop()
        ip = ends.ip
        with bind_errors(ip, self.drive_port, "udp", f"{ends.what}'s LAN socket"):
            transport, _ = await loop.create_datagram_endpoint(lambda: Datagrams(ends.on_datagram),
                                                               local_addr=(ip, self.drive_port))
        link = _OwnLink(transport, None, None)
        try:
            with bind_errors(ip, self.vop_port, "tcp", f"{ends.what}'s VOP listener"):
                link.vop = await asyncio.start_server(ends.on_vop, ip, self.vop_port, backlog=self.vop_backlog,
                                                      reuse_address=True)
            with bind_errors(ip, self.iscsi_port, "tcp", f"{ends.what}'s iSCSI target"):
                await ends.portal.start()
            link.portal = ends.portal
        except BaseException:
            await link.close()
            await ends.portal.close()
            raise
        return link


# --- shared -------------------------------------------------------------------


class _SharedLink:
    def __init__(self, sockets: SharedSockets, ends: DriveEndpoints) -> None:
        self.sockets, self.ends = sockets, ends
        self.address = socket.inet_aton(ends.ip)
        self.control = [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo_for_source(self.address))]
        self.open = True

    def send(self, data: bytes, to: Address) -> bool:
        return self.open and self.sockets.udp.send(data, to, self.control)

    @property
    def serving(self) -> bool:
        return self.open and self.sockets.serving

    async def close(self) -> None:
        if self.open:
            self.open = False
            await self.sockets.release(self)


class SharedSockets:
    """One UDP socket and two listeners on the wildcard address for every drive of the host."""

    mode = SocketMode.SHARED
    reason = ""

    def __init__(self, drive_port: int, vop_port: int, iscsi_port: int, *, drives: int, vop_backlog: int,
                 on_unrouted: Unrouted, iscsi_idle_timeout_s: float = 300.0) -> None:
        from .iscsi import IscsiListener

        self.vop_port, self.on_unrouted = vop_port, on_unrouted
        self.vop_backlog = min(MAX_SHARED_BACKLOG, max(vop_backlog, vop_backlog * drives))
        self.udp = SharedDatagramSocket(drive_port, on_unrouted)
        self.iscsi = IscsiListener(iscsi_port, host=WILDCARD, backlog=min(MAX_SHARED_BACKLOG, max(128, drives)),
                                   idle_timeout_s=iscsi_idle_timeout_s,
                                   on_unrouted=lambda local: on_unrouted("iscsi", f"connection to {local[0]}:{local[1]}"))
        self.links: dict[str, _SharedLink] = {}
        self._vop_server: asyncio.Server | None = None

    #: What a wildcard bind that clashes tells the person running the host.
    ADVICE = (". Shared sockets bind the port on every address of this network namespace: run this host with "
              "--sockets per-drive, or give it its own network namespace or VM")

    async def start(self) -> None:
        try:
            with bind_errors(WILDCARD, self.udp.port, "udp", "the drives' shared LAN socket", self.ADVICE):
                self.udp.open()
            with bind_errors(WILDCARD, self.vop_port, "tcp", "the drives' shared VOP listener", self.ADVICE):
                self._vop_server = await asyncio.start_server(self._vop, WILDCARD, self.vop_port,
                                                              backlog=self.vop_backlog, reuse_address=True)
            self.vop_port = self._vop_server.sockets[0].getsockname()[1]
            with bind_errors(WILDCARD, self.iscsi.port, "tcp", "the drives' shared iSCSI listener", self.ADVICE):
                await self.iscsi.start()
        except BaseException:
            await self.stop()
            raise

    async def open(self, ends: DriveEndpoints) -> DriveLink:
        other = self.links.get(ends.ip)
        if other is not None:
            raise BindError(f"cannot serve {ends.what} at {ends.ip}: {other.ends.what} is already there")
        # The address must be this host's, as a per-drive bind would check: the kernel sends from it.
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            with bind_errors(ends.ip, self.udp.port, "udp", f"{ends.what}'s address"):
                probe.bind((ends.ip, 0))
        finally:
            probe.close()
        link = _SharedLink(self, ends)
        self.links[ends.ip] = link
        self.udp.routes[link.address] = ends.on_datagram
        self.iscsi.attach(ends.portal)
        return link

    async def release(self, link: _SharedLink) -> None:
        if self.links.get(link.ends.ip) is link:
            del self.links[link.ends.ip]
            self.udp.routes.pop(link.address, None)
        await self.iscsi.detach(link.ends.portal)

    async def _vop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        local = writer.get_extra_info("sockname") or ("?", 0)
        link = self.links.get(local[0])
        if link is None:
            peer = writer.get_extra_info("peername") or ("?", 0)
            self.on_unrouted("vop", f"connection from {peer[0]} to {local[0]}:{local[1]}")
            writer.close()
            return
        await link.ends.on_vop(reader, writer)

    @property
    def serving(self) -> bool:
        return (self.udp.serving and self._vop_server is not None and self._vop_server.is_serving()
                and self.iscsi.serving)

    async def stop(self) -> None:
        for link in list(self.links.values()):
            await link.close()
        self.udp.close()
        if self._vop_server is not None:
            self._vop_server.close()
            await self._vop_server.wait_closed()
            self._vop_server = None
        await self.iscsi.close()


def host_sockets(mode: SocketMode, drives: int, drive_port: int, vop_port: int, iscsi_port: int, vop_backlog: int,
                 on_unrouted: Unrouted) -> DriveSockets:
    """The sockets of a host of ``drives`` drives, in ``mode`` (auto: decided here, see choose_mode)."""
    chosen, reason = choose_mode(mode, drives)
    sockets: DriveSockets
    if chosen is SocketMode.SHARED:
        sockets = SharedSockets(drive_port, vop_port, iscsi_port, drives=drives, vop_backlog=vop_backlog,
                                on_unrouted=on_unrouted)
    else:
        sockets = PerDriveSockets(drive_port, vop_port, iscsi_port, vop_backlog)
    sockets.reason = reason
    return sockets
