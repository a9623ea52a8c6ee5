"""Host-interface throughput with encryption on, against raw AES-256-GCM, in one run.

    python bench/host_throughput.py [--size-mib 1024] [--block-kib 256] [--window 16]

A child process runs a lab (one token, one armed drive, a cartridge library in a
temporary directory); this process is the host: it writes SIZE in blocks through the
drive's host interface on loopback, rewinds, and reads it back. The baseline is raw
AES-256-GCM encryption of the same blocks in this process. Bounded by size; stops itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def _lab(workdir: str, ready: mp.connection.Connection, stop: mp.synchronize.Event) -> None:
    from drive_daemon.cartridge import Cartridge
    from lab.cluster import Lab, LabPlan

    async def main() -> None:
        plan = LabPlan(token_names=("token-A",), drive_count=1)  # on free addresses (lab/addresses.py)
        async with Lab(Path(workdir), plan) as lab:
            await lab.arm()
            Cartridge.create(lab.library, "BENCH")
            ready.send(lab.drive_ips["drive-01"])
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


def raw_aes_gcm(blocks: list[bytes], rounds: int) -> float:
    aead = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    total, started = 0, time.perf_counter()
    for i in range(rounds):
        block = blocks[i % len(blocks)]
        aead.encrypt(nonce, block, b"bench")
        total += len(block)
    return total / (time.perf_counter() - started) / 1e6


async def through_host(drive_ip: str, blocks: list[bytes], rounds: int, window: int) -> tuple[float, float]:
    from drive_daemon.host_client import HostClient

    async with HostClient(drive_ip) as host:
        await host.load("BENCH")
        started = time.perf_counter()
        await host.write_blocks((blocks[i % len(blocks)] for i in range(rounds)), window=window)
        await host.write_filemarks(1)
        write_s = time.perf_counter() - started
        await host.rewind()
        started = time.perf_counter()
        total = 0
        async for block in host.read_blocks(rounds, window=window):
            total += len(block)
        read_s = time.perf_counter() - started
        await host.unload()
    size = sum(len(blocks[i % len(blocks)]) for i in range(rounds))
    assert total == size
    return size / write_s / 1e6, size / read_s / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--block-kib", type=int, default=256)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    block = args.block_kib * 1024
    rounds = args.size_mib * 1024 * 1024 // block
    blocks = [os.urandom(block) for _ in range(16)]
    with tempfile.TemporaryDirectory() as workdir:
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        stop = ctx.Event()
        proc = ctx.Process(target=_lab, args=(workdir, child, stop))
        proc.start()
        try:
            if not parent.poll(60):
                raise SystemExit("the lab did not start within 60 s")
            drive_ip = parent.recv()
            raw = raw_aes_gcm(blocks, rounds)
            write, read = asyncio.run(through_host(drive_ip, blocks, rounds, args.window))
        finally:
            stop.set()
            proc.join(30)
    result = {"size_mib": args.size_mib, "block_kib": args.block_kib, "window": args.window,
              "raw_aes_gcm_mb_s": round(raw), "host_write_mb_s": round(write), "host_read_mb_s": round(read),
              "write_ratio": round(write / raw, 3), "read_ratio": round(read / raw, 3)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"raw AES-256-GCM (one process): {raw:8.0f} MB/s")
        print(f"host interface write:          {write:8.0f} MB/s   ratio {write / raw:.2f}")
        print(f"host interface read:           {read:8.0f} MB/s   ratio {read / raw:.2f}")


if __name__ == "__main__":
    main()
