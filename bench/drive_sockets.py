"""File descriptors and start time of one drive host process, per socket mode (issue 11).

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/drive_sockets.py [--drives 100 1000 10000]'

For each count and mode, a child process builds a host of that many drives (127.20.0.0/16,
fresh NVRAM), starts it and reports the time ``DriveHost.start`` took and the descriptors it
holds (/proc/self/fd) before and after. per-drive is skipped where 3 descriptors a drive
would pass the open-file limit (it cannot start: that is what shared mode is for).
Shared mode binds wildcard ports: run it in a network namespace of its own (as above).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drive_daemon.service import DriveHost, DriveHostConfig  # noqa: E402
from drive_daemon.sockets import FDS_PER_DRIVE, SocketMode  # noqa: E402
from protocol.manufacturing import make_drives  # noqa: E402

FIRST = ipaddress.IPv4Address("127.20.0.1")


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _one(count: int, mode: str, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def main() -> dict[str, object]:
        with tempfile.TemporaryDirectory() as state:
            drives = [(m, str(FIRST + i)) for i, m in enumerate(make_drives(count))]
            made = time.perf_counter()
            host = DriveHost(DriveHostConfig(Path(state), lan_port=17010, sockets=SocketMode(mode)), drives)
            built = time.perf_counter()
            before = _fds()
            await host.start()
            started = time.perf_counter()
            after = _fds()
            await host.stop()
            return {"drives": count, "mode": mode, "fds_before_start": before, "fds_serving": after,
                    "construct_s": round(built - made, 3), "start_s": round(started - built, 3)}

    out.put(asyncio.run(main()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, nargs="+", default=[10, 100, 1000, 10000])
    args = parser.parse_args()
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    ctx = multiprocessing.get_context("spawn")
    for count in args.drives:
        for mode in ("shared", "per-drive"):
            if mode == "per-drive" and FDS_PER_DRIVE * count + 64 > soft:
                print(json.dumps({"drives": count, "mode": mode, "skipped": f"needs > {soft} descriptors"}))
                continue
            out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
            proc = ctx.Process(target=_one, args=(count, mode, out))
            proc.start()
            print(json.dumps(out.get(timeout=600) | {"fd_soft_limit": soft}), flush=True)
            proc.join(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
