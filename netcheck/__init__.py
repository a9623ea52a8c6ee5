"""Who holds an address: bind failures that name the ip:port and the process holding it.

Every daemon binds static addresses; when one is taken, asyncio's error lacks the address
(for UDP) and never says who has it. :func:`bind_failure` builds the message a person can
act on, from /proc/net/{tcp,udp} (the socket inode) and /proc/*/fd (the process owning it).
Reads /proc only; it never opens a socket. Imports nothing of ours but protocol/.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Holder", "bind_failure", "find_holders", "is_bind_clash"]

#: TCP state LISTEN in /proc/net/tcp.
_LISTEN = "0A"
#: At most this many processes are scanned for the socket (bounded work on a busy host).
MAX_PROCESSES = 20000


@dataclass(frozen=True)
class Holder:
    """A socket bound where we wanted to bind, and the process owning it (``pid`` None if not visible)."""

    ip: str
    port: int
    transport: str
    pid: int | None
    command: str

    def describe(self) -> str:
        if self.pid is None:
            return "an unknown process (not visible from here: another user, or another network namespace)"
        who = "this process" if self.pid == os.getpid() else "process"
        return f"{who} {self.pid} ({self.command})"


def _hex_ip(ip: str) -> str:
    """/proc/net's spelling of an IPv4 address: the four octets in host (little-endian) order."""
    return "".join(f"{int(o):02X}" for o in reversed(ip.split(".")))


def _dotted_ip(hex_ip: str) -> str:
    return ".".join(str(int(hex_ip[i:i + 2], 16)) for i in (6, 4, 2, 0))


def _sockets(transport: str, ip: str, port: int, proc: Path) -> list[tuple[str, int]]:
    """(local ip, inode) of the sockets bound to ip:port or to the wildcard on that port
    (for ip 0.0.0.0: every socket on that port, whatever its address: they all clash)."""
    wanted = {f"{_hex_ip(ip)}:{port:04X}", f"00000000:{port:04X}"}
    any_address = ip == "0.0.0.0"
    found: list[tuple[str, int]] = []
    try:
        lines = (proc / "net" / transport).read_text().splitlines()[1:]
    except OSError:
        return found
    for line in lines:
        fields = line.split()
        if len(fields) < 10:
            continue
        if not (fields[1].endswith(f":{port:04X}") if any_address else fields[1] in wanted):
            continue
        if transport == "tcp" and fields[3] != _LISTEN:
            continue
        found.append((_dotted_ip(fields[1].split(":")[0]), int(fields[9])))
    return found


def _owners(inodes: set[int], proc: Path) -> dict[int, int]:
    """inode -> pid, from the socket links in /proc/*/fd."""
    owners: dict[int, int] = {}
    targets = {f"socket:[{i}]": i for i in inodes}
    try:
        pids = [int(d) for d in os.listdir(proc) if d.isdigit()][:MAX_PROCESSES]
    except OSError:
        return owners
    for pid in pids:
        try:
            fds = os.listdir(proc / str(pid) / "fd")
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(proc / str(pid) / "fd" / fd)
            except OSError:
                continue
            if link in targets:
                owners.setdefault(targets[link], pid)
        if len(owners) == len(inodes):
            break
    return owners


def _command(pid: int, proc: Path) -> str:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return "?"
    words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
    text = " ".join(words) or "?"
    return text if len(text) <= 160 else text[:157] + "..."


def find_holders(ip: str, port: int, transport: str = "tcp", *, proc: Path = Path("/proc")) -> list[Holder]:
    """Every socket in this network namespace bound to ``ip:port`` (or 0.0.0.0:port), with its process;
    for ``ip`` 0.0.0.0, every socket bound to ``port`` on any address."""
    sockets = _sockets(transport, ip, port, proc)
    owners = _owners({inode for _, inode in sockets}, proc) if sockets else {}
    holders = []
    for local, inode in sockets:
        pid = owners.get(inode)
        holders.append(Holder(local, port, transport, pid, _command(pid, proc) if pid is not None else "?"))
    return holders


def is_bind_clash(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES)


def bind_failure(exc: OSError, ip: str, port: int, transport: str, what: str) -> str:
    """The message for a failed bind of ``what`` (e.g. "the drive's VOP listener") at ``ip:port``."""
    where = f"{ip}:{port}/{transport}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return (f"cannot bind {what} to {where}: {ip} is not an address of this host "
                f"(on loopback use 127.x.y.z; in a namespace, add the address first)")
    if exc.errno == errno.EACCES:
        return f"cannot bind {what} to {where}: permission denied (ports below 1024 need root)"
    if exc.errno != errno.EADDRINUSE:
        return f"cannot bind {what} to {where}: {exc.strerror or exc}"
    holders = find_holders(ip, port, transport)
    if holders:
        held = "; ".join(f"{h.ip}:{h.port} by {h.describe()}" for h in holders)
    else:
        held = "by an unknown process (not visible from here)"
    return (f"cannot bind {what} to {where}: address already in use, held {held}. "
            f"Stop it, or give this one other addresses")
