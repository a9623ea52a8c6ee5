"""What one loopback datagram costs the sender: ``sendto`` from a drive's own socket (per-drive
mode) against ``sendmsg`` with IP_PKTINFO from the shared wildcard socket (shared mode).

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/udp_send.py [--datagrams 20000] [--runs 3]'

On loopback the sender's system call also does the receiver's network-stack work, so this is
most of the kernel's share of a drive's pull: each drive sends two datagrams (KEY_REQUEST,
KEY_ACK) and receives one. A receiver in another process drains the datagrams, as a token
does. Prints microseconds per datagram (min/median/max of the runs) and the ratio, shared
over per-drive. Run it in a namespace of its own: it binds fixed loopback addresses.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.constants import DRIVE_PORT, TOKEN_LAN_PORT  # noqa: E402
from protocol.pktinfo import IP_PKTINFO, pktinfo_for_source  # noqa: E402

TOKEN = ("127.0.9.1", TOKEN_LAN_PORT)
DRIVE_IP = "127.1.0.5"
#: A KEY_REQUEST's size, give or take.
PAYLOAD = os.urandom(60)


def drain(ready: Any, done: Any) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.bind(TOKEN)
    sock.settimeout(1.0)
    ready.set()
    try:
        while True:
            sock.recv(2048)
    except socket.timeout:
        done.set()
    finally:
        sock.close()


def one_run(mode: str, n: int) -> float:
    ready, done = multiprocessing.Event(), multiprocessing.Event()
    receiver = multiprocessing.Process(target=drain, args=(ready, done))
    receiver.start()
    ready.wait(10)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        if mode == "shared":
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            sock.bind(("0.0.0.0", DRIVE_PORT))
            control = [(socket.IPPROTO_IP, IP_PKTINFO, pktinfo_for_source(socket.inet_aton(DRIVE_IP)))]
            start = time.perf_counter()
            for _ in range(n):
                sock.sendmsg([PAYLOAD], control, 0, TOKEN)
        else:
            sock.bind((DRIVE_IP, DRIVE_PORT))
            start = time.perf_counter()
            for _ in range(n):
                sock.sendto(PAYLOAD, TOKEN)
        elapsed = time.perf_counter() - start
    finally:
        sock.close()
    receiver.join(30)
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datagrams", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.datagrams < 1 or args.runs < 1:
        parser.error("--datagrams and --runs must be at least 1")
    results: dict[str, list[float]] = {"per-drive": [], "shared": []}
    for _ in range(args.runs):
        for mode in results:  # alternate, so load on the machine falls on both alike
            results[mode].append(one_run(mode, args.datagrams))
    for mode, values in results.items():
        print(f"{mode:>9}: {min(values):.1f}/{statistics.median(values):.1f}/{max(values):.1f} µs per datagram")
    ratio = statistics.median(results["shared"]) / statistics.median(results["per-drive"])
    print(f"shared / per-drive: x{ratio:.2f}")


if __name__ == "__main__":
    main()
