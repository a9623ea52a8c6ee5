"""Throughput of the iSCSI transport alone: our initiator writing 256 KiB blocks to our
portal serving a LUN that discards data (in another process), and to tgt's SSC LUN.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/iscsi_transport.py --mib 512'

The drive's real rate (SSC device, encryption, cartridge) is bench/iscsi_throughput.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drive_daemon.iscsi import IscsiConfig, IscsiPortal, ScsiOutcome  # noqa: E402
from host.iscsi_client import IscsiClient  # noqa: E402

TARGET = "iqn.2026-11.org.t10k-lab:t10000.bench"
IP = "127.0.0.41"
BLOCK = 256 * 1024


class SinkLun:
    def execute(self, nexus: str, cdb: bytes, data_out: object, now: float) -> ScsiOutcome:
        return ScsiOutcome(0)

    def lun_reset(self, now: float) -> None:
        pass

    def nexus_lost(self, nexus: str) -> None:
        pass


def serve(ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event) -> None:  # type: ignore[name-defined]
    async def main() -> None:
        async with IscsiPortal(IscsiConfig(target_name=TARGET), SinkLun(), host=IP):
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)
    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def write(port: int, target: str, lun: int, mib: int, digests: bool, depth: int = 1,
                server_pid: int = 0) -> tuple[float, float, float]:
    """(MB/s, target CPU s per GiB, initiator CPU s per GiB)."""
    data = bytes(range(256)) * (BLOCK // 256)
    cdb = bytes([0x0A, 0]) + BLOCK.to_bytes(3, "big") + b"\0"
    async with IscsiClient(IP, port, target=target, digests=digests) as client:
        client.lun = lun
        await client.execute(bytes(6))
        await client.execute(bytes([0x01, 0, 0, 0, 0, 0]))
        count = mib * 1024 * 1024 // BLOCK
        start, cpu, server_cpu = time.perf_counter(), time.process_time(), cpu_seconds(server_pid)
        window: set[asyncio.Task[object]] = set()
        for _ in range(count):  # up to `depth` commands in flight; the target runs them in CmdSN order
            if len(window) >= depth:
                finished, window = await asyncio.wait(window, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    if task.result().status:  # type: ignore[attr-defined]
                        raise SystemExit(f"write failed: {task.result()}")
            window.add(asyncio.ensure_future(client.execute(cdb, data_out=data)))
        for reply in await asyncio.gather(*window):
            if reply.status:
                raise SystemExit(f"write failed: {reply}")
        gib = count * BLOCK / 2**30
        return (count * BLOCK / (time.perf_counter() - start) / 1e6,
                (cpu_seconds(server_pid) - server_cpu) / gib, (time.process_time() - cpu) / gib)


async def against_tgt(mib: int, digests: bool, depth: int) -> tuple[float, float, float]:
    from lab.tgt import FAST_SESSION, TgtTape
    with tempfile.TemporaryDirectory() as tmp:
        async with TgtTape(Path(tmp), IP, port=3262, size_mib=mib + 64, session=FAST_SESSION) as tgt:
            return await write(3262, tgt.iqn, tgt.lun, mib, digests, depth, tgt.pid or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=512)
    parser.add_argument("--digests", action="store_true")
    parser.add_argument("--depth", type=int, default=1, help="commands in flight (1: one at a time)")
    args = parser.parse_args()
    ready, stop = multiprocessing.Event(), multiprocessing.Event()
    server = multiprocessing.Process(target=serve, args=(ready, stop))
    server.start()
    try:
        ready.wait(10)
        ours = asyncio.run(write(3260, TARGET, 0, args.mib, args.digests, args.depth, server.pid or 0))
    finally:
        stop.set()
        server.join(10)
    theirs = asyncio.run(against_tgt(args.mib, args.digests, args.depth))
    print(f"{args.mib} MiB in 256 KiB WRITE(6), depth {args.depth}, digests {'on' if args.digests else 'off'}:")
    for name, (rate, target_cpu, initiator_cpu) in (("our portal, sink LUN", ours), ("tgt, SSC LUN", theirs)):
        print(f"  {name:22} {rate:6.0f} MB/s   CPU per GiB: target {target_cpu:.2f} s, our initiator "
              f"{initiator_cpu:.2f} s")
    print(f"  ratio ours/tgt: {ours[0] / theirs[0]:.2f}")


if __name__ == "__main__":
    main()
