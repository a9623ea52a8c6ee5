"""The drive-host process of bench/pool_scale.py: every drive of a manufacturing file in one
process, as ``t10k drive run-many`` runs them, plus a report of when the pool got there.

    python bench/pool_host.py --manufacturing F --first-ip 127.1.0.1 --state DIR [--sockets {auto,per-drive,shared}]

It prints JSON lines on stdout: ``serving`` (with its file descriptors and RSS), ``enrolled``
and ``armed`` (wall-clock times, comparable with the bench's own on one machine) when every
drive has accepted its device key / media keys, and ``stopped`` with its counters on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drive_daemon.drive import DeviceKeysAccepted, MediaKeysAccepted, PullGaveUp, PullScheduled  # noqa: E402
from drive_daemon.manufacturing import read_manufacturing_file  # noqa: E402
from drive_daemon.service import DriveHost, DriveHostConfig  # noqa: E402
from netcheck.heap import settle_heap  # noqa: E402
from drive_daemon.sockets import SocketMode  # noqa: E402
from protocol.constants import KeyKind  # noqa: E402


def rss_kib(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def fd_count(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def emit(**record: object) -> None:
    print(json.dumps(record), flush=True)


async def serve(args: argparse.Namespace) -> None:
    made = read_manufacturing_file(args.manufacturing)
    first = ipaddress.IPv4Address(args.first_ip)
    drives = [(m, str(first + i)) for i, m in enumerate(made)]
    config = DriveHostConfig(state_dir=args.state, sockets=SocketMode(args.sockets))
    n = len(drives)
    seen: dict[type, set[bytes]] = {DeviceKeysAccepted: set(), MediaKeysAccepted: set()}
    gave_up: list[bytes] = []
    #: When the first drive heard of each write, and when 50% and 90% had its keys.
    marks: dict[str, float] = {}
    quantiles = {max(1, n // 2): "50", max(1, n * 9 // 10): "90"}

    def on_event(csn: bytes, event: object) -> None:
        kind = type(event)
        if kind in seen:
            done = seen[kind]
            if csn not in done:
                done.add(csn)
                phase = "enrolled" if kind is DeviceKeysAccepted else "armed"
                if len(done) in quantiles:
                    marks[f"{phase}_{quantiles[len(done)]}"] = time.time()
                if len(done) == n:
                    emit(status=phase, at=time.time(), marks=marks)
        elif kind is PullScheduled:
            marks.setdefault("heard_" + ("ekt" if event.kind is KeyKind.DEVICE else "okt"),  # type: ignore[attr-defined]
                             time.time())
        elif kind is PullGaveUp:
            gave_up.append(csn)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    t0 = time.perf_counter()
    async with DriveHost(config, drives) as host:
        host.subscribe(on_event)
        settle_heap()  # as `t10k drive run-many` does once its drives are up
        emit(status="serving", drives=n, start_s=time.perf_counter() - t0, fds=fd_count(), rss_kib=rss_kib())
        await stop.wait()
        await host.flush()
    c = host.counters
    emit(status="stopped", datagrams_in=c.datagrams_in, datagrams_out=c.datagrams_out,
         enrolled=len(seen[DeviceKeysAccepted]), armed=len(seen[MediaKeysAccepted]), pulls_given_up=len(gave_up),
         events=dict(c.events), rss_kib=rss_kib())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manufacturing", required=True, type=Path)
    parser.add_argument("--first-ip", required=True)
    parser.add_argument("--state", required=True, type=Path)
    parser.add_argument("--sockets", default=SocketMode.AUTO.value, choices=[m.value for m in SocketMode])
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
