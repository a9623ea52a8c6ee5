"""Free loopback addresses for a lab, so two labs (or a lab and the README's daemons) run side by side.

A lab on one machine takes a 127.x.y.0/24 block (tokens at .21, .22, drives from .101)
and a drive-LAN UDP port. Every lab shares the broadcast address 127.255.255.255, so the
LAN port is what keeps one lab from hearing another's KEYS_AVAILABLE: each lab gets its own.
Freedom is probed by binding every address and port the lab will bind.
"""

from __future__ import annotations

import errno
import ipaddress
import random
import re
import socket
from dataclasses import dataclass

from netcheck import find_holders
from protocol.constants import (
    DRIVE_LAN_PORT,
    DRIVE_PORT,
    ISCSI_PORT,
    LOOPBACK_BROADCAST,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    VOP_PORT,
)

from .errors import AddressError  # noqa: F401 - re-exported: its home before lab/errors.py

FIRST_TOKEN_HOST = 21
FIRST_DRIVE_HOST = 101
#: Drive-LAN ports are drawn from here: below Linux's ephemeral range (32768-60999), above the fixed ones.
LAN_PORTS = range(20000, 32000)
#: Random blocks are drawn from 127.1-254.*.0/24, never 127.0 (the defaults, 127.0.0.1) nor 127.18 (lab up).
_RESERVED_SECOND_OCTETS = {0, 18, 255}
MAX_ATTEMPTS = 64
_SPEC = re.compile(r"^(?P<net>127\.\d{1,3}\.\d{1,3}\.0/24)(?::(?P<port>\d{1,5}))?$")



@dataclass(frozen=True)
class LabNet:
    """Where a lab lives: a /24 on loopback and its drive-LAN port. Spelled ``127.0.5.0/24:7110``."""

    network: ipaddress.IPv4Network = ipaddress.IPv4Network("127.0.0.0/24")
    lan_port: int = DRIVE_LAN_PORT
    broadcast: str = LOOPBACK_BROADCAST

    def host(self, n: int) -> str:
        return str(self.network.network_address + n)

    def token_ip(self, i: int) -> str:
        return self.host(FIRST_TOKEN_HOST + i)

    def drive_ip(self, i: int) -> str:
        return self.host(FIRST_DRIVE_HOST + i)

    def __str__(self) -> str:
        return f"{self.network}:{self.lan_port}"

    @property
    def prefix(self) -> str:
        """The first three octets, as the walkthrough uses them: ``127.0.5``."""
        return str(self.network.network_address).rsplit(".", 1)[0]

    @classmethod
    def parse(cls, text: str) -> LabNet:
        """``127.X.Y.0/24`` (drive LAN on the default port) or ``127.X.Y.0/24:PORT``."""
        m = _SPEC.match(text.strip())
        port = int(m["port"]) if m and m["port"] else DRIVE_LAN_PORT
        try:
            network = ipaddress.IPv4Network(m["net"]) if m else None
        except ValueError:
            network = None
        if network is None or not 1 <= port <= 65535:
            raise AddressError(f"--net {text!r}: give a loopback /24 and optionally the drive-LAN UDP port, "
                               f"e.g. 127.0.5.0/24 or 127.0.5.0/24:{LAN_PORTS.start}")
        return cls(network, port)


#: The fixed addresses of the docs and the reference captures.
DEFAULT_NET = LabNet()


def _probe(ip: str, port: int, transport: str) -> OSError | None:
    kind = socket.SOCK_STREAM if transport == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as sock:
        if transport == "tcp":  # as the daemons bind (reuse_address): a TIME_WAIT is no clash
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((ip, port))
        except OSError as exc:
            return exc
    return None


def needs(net: LabNet, tokens: int, drives: int) -> list[tuple[str, int, str]]:
    """Every (ip, port, transport) a lab of this size binds."""
    wanted = [(net.broadcast, net.lan_port, "udp")]
    for i in range(tokens):
        wanted += [(net.token_ip(i), TOKEN_LAN_PORT, "udp"), (net.token_ip(i), TOKEN_MGMT_PORT, "tcp")]
    for i in range(drives):
        ip = net.drive_ip(i)
        wanted += [(ip, DRIVE_PORT, "udp"), (ip, VOP_PORT, "tcp"), (ip, ISCSI_PORT, "tcp")]
    return wanted


def clashes(net: LabNet, tokens: int, drives: int) -> list[str]:
    """What is taken among the addresses this lab needs, each naming ip:port and its holder."""
    found = []
    for ip, port, transport in needs(net, tokens, drives):
        exc = _probe(ip, port, transport)
        if exc is None:
            continue
        if exc.errno != errno.EADDRINUSE:
            found.append(f"{ip}:{port}/{transport}: {exc.strerror}")
            continue
        holders = find_holders(ip, port, transport)
        who = ", ".join(h.describe() for h in holders) or "an unknown process"
        found.append(f"{ip}:{port}/{transport} held by {who}")
    return found


def ensure_free(net: LabNet, tokens: int, drives: int) -> None:
    taken = clashes(net, tokens, drives)
    if taken:
        more = f" (and {len(taken) - 3} more)" if len(taken) > 3 else ""
        raise AddressError(f"the lab's addresses {net} are in use: {'; '.join(taken[:3])}{more}. "
                           f"Stop that, give other addresses with --net 127.X.Y.0/24:PORT, "
                           f"or leave --net out to have free ones found")


def free_lan_port(broadcast: str = LOOPBACK_BROADCAST, *, rng: random.Random | None = None) -> int:
    """A drive-LAN UDP port no other lab on this machine listens on."""
    rng = rng or random.Random()
    for _ in range(MAX_ATTEMPTS):
        port = rng.choice(LAN_PORTS)
        if _probe(broadcast, port, "udp") is None:
            return port
    raise AddressError(f"no free drive-LAN port found in {MAX_ATTEMPTS} tries")


def allocate(tokens: int, drives: int, *, rng: random.Random | None = None) -> LabNet:
    """A random 127.x.y.0/24 and drive-LAN port where everything this lab binds is free."""
    rng = rng or random.Random()
    for _ in range(MAX_ATTEMPTS):
        second = rng.choice([o for o in range(1, 255) if o not in _RESERVED_SECOND_OCTETS])
        net = LabNet(ipaddress.IPv4Network(f"127.{second}.{rng.randrange(256)}.0/24"), rng.choice(LAN_PORTS))
        if not clashes(net, tokens, drives):
            return net
    raise AddressError(f"no free loopback /24 and drive-LAN port found in {MAX_ATTEMPTS} tries: "
                       f"give them with --net 127.X.Y.0/24:PORT")


#: Every port a token or a drive binds on its own address (the drive LAN's broadcast port aside).
DAEMON_PORTS = ((TOKEN_LAN_PORT, "udp"), (TOKEN_MGMT_PORT, "tcp"), (DRIVE_PORT, "udp"), (VOP_PORT, "tcp"),
                (ISCSI_PORT, "tcp"))


def free_net(*, rng: random.Random | None = None) -> LabNet:
    """A /24 and drive-LAN port where nothing holds any port a token or a drive binds on any host .1-.254.

    For tests and tools that start daemons one by one at addresses of their choosing
    (``net.host(n)``), or need an address where nothing answers.
    """
    for _ in range(MAX_ATTEMPTS):
        net = allocate(0, 0, rng=rng)
        if all(_probe(net.host(n), port, transport) is None for n in range(1, 255) for port, transport in DAEMON_PORTS):
            return net
    raise AddressError(f"no loopback /24 with every daemon port free found in {MAX_ATTEMPTS} tries")
