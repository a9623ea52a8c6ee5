"""One iSCSI listener for many portals: a connection goes to the portal at its local address.

A host of thousands of drives cannot hold a listening socket per drive (file descriptors),
so in shared-sockets mode one listener on the wildcard address accepts every connection
and routes it by the address it was made to (the accepted socket's local address): the
portal of the drive at that address answers discovery (SendTargets lists that drive's
target only) and login as if it listened there alone. A connection to an address with no
portal is closed at once and counted. One idle timer serves every portal.
"""

from __future__ import annotations

import asyncio
import time
from typing import Callable

from .portal import IscsiPortal, _Connection, idle_ticks, stop_idle_ticks

#: Called with the local address of each connection closed for want of a portal there.
Unrouted = Callable[[tuple[str, int]], None]


class IscsiListener:
    """``await start()``, then :meth:`attach` each portal (served at its ``host``); :meth:`close`."""

    def __init__(self, port: int, *, host: str = "0.0.0.0", backlog: int = 1024, idle_timeout_s: float = 300.0,
                 on_unrouted: Unrouted | None = None, clock: Callable[[], float] = time.time) -> None:
        self.host, self.port, self.backlog = host, port, backlog
        self.idle_timeout_s, self.clock = idle_timeout_s, clock
        self.on_unrouted = on_unrouted
        self.portals: dict[str, IscsiPortal] = {}
        #: connections closed at once because no portal is at their local address
        self.unrouted = 0
        self._server: asyncio.Server | None = None
        self._timer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self._route), self.host, self.port,
                                                backlog=self.backlog, reuse_address=True)
        if self.port == 0:
            self.port = self._server.sockets[0].getsockname()[1]
        self._timer = asyncio.create_task(idle_ticks(self.portals.values(), self.idle_timeout_s, self.clock),
                                          name="iscsi-idle-shared")

    def _route(self, local: tuple[str, int]) -> IscsiPortal | None:
        portal = self.portals.get(local[0])
        if portal is None:
            self.unrouted += 1
            if self.on_unrouted is not None:
                self.on_unrouted(local)
        return portal

    def attach(self, portal: IscsiPortal) -> None:
        """Serve ``portal`` at (portal.host, this listener's port) from now on."""
        portal.served_at(self.port)
        self.portals[portal.host] = portal

    async def detach(self, portal: IscsiPortal) -> None:
        """Stop serving ``portal``: new connections to its address are refused, its own ones closed."""
        if self.portals.get(portal.host) is portal:
            del self.portals[portal.host]
        await portal.close()

    @property
    def serving(self) -> bool:
        return (self._server is not None and self._server.is_serving()
                and self._timer is not None and not self._timer.done())

    async def close(self) -> None:
        await stop_idle_ticks(self._timer)
        if self._server is not None:
            self._server.close()
        for portal in list(self.portals.values()):
            await portal.close()
        self.portals.clear()
        if self._server is not None:
            await self._server.wait_closed()
