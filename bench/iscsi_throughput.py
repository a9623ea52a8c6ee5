"""iSCSI tape throughput: our drive (encrypting) against tgt's SSC LUN, with the same initiator, in one run.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/iscsi_throughput.py [--size-mib 1024]'

Our initiator (host/) writes SIZE in variable blocks of --block-kib (default 256 KiB),
writes a filemark, rewinds and reads it all back, first to tgt's tape LUN (tgtd started
here, on a loopback address of its own, stopped by this script), then to one of our drives
armed by a token (a lab in a child process, a cartridge loaded by the operator's path).
It prints both rates and the ratios ours/tgt; the target is a write ratio of at least 0.5.
Bounded by size; every wait has a timeout. ``--only tgt`` or ``--only drive`` runs one half.
Run it as root (tgtd needs /var/run/tgtd), preferably in a private network namespace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from host.session import open_tape  # noqa: E402
from host.tape import TapeDrive  # noqa: E402

TGT_ADDRESS = "127.0.77.1"
VOLSER = "BENCH1"


async def through(tape: TapeDrive, blocks: list[bytes], rounds: int, window: int) -> dict[str, float]:
    """Write ``rounds`` blocks and a filemark from BOT, rewind, read them back; MB/s both ways."""
    await tape.ready()
    await tape.set_block_size(0)
    await tape.rewind()
    size = sum(len(blocks[i % len(blocks)]) for i in range(rounds))
    started = time.perf_counter()
    await tape.write_blocks((blocks[i % len(blocks)] for i in range(rounds)), window=window)
    await tape.write_filemarks(1)
    write_s = time.perf_counter() - started
    await tape.rewind()
    started = time.perf_counter()
    total = 0
    async for block in tape.read_blocks(rounds, window=window, max_length=len(blocks[0])):
        total += len(block)
    read_s = time.perf_counter() - started
    if total != size:
        raise SystemExit(f"read back {total} octets of {size}")
    return {"write_mb_s": size / write_s / 1e6, "read_mb_s": size / read_s / 1e6}


def tgt_half(workdir: Path, blocks: list[bytes], rounds: int, window: int, size_mib: int) -> dict[str, float]:
    from lab.tgt import FAST_SESSION, TgtTape

    with TgtTape(workdir / "tgt", TGT_ADDRESS, size_mib=size_mib + 256, session=FAST_SESSION) as tgt:
        async def run() -> dict[str, float]:
            async with open_tape(TGT_ADDRESS, target=tgt.iqn, lun=tgt.lun) as tape:
                return await through(tape, blocks, rounds, window)
        return asyncio.run(run())


def _lab(workdir: str, ready: Any, stop: Any) -> None:
    from drive_daemon.cartridge import Cartridge
    from drive_daemon.vop import vop_load
    from lab.cluster import Lab, LabPlan

    async def main() -> None:
        plan = LabPlan(token_names=("token-A",), drive_count=1)  # free addresses and LAN port, found at start
        async with Lab(Path(workdir), plan) as lab:
            await lab.arm()
            Cartridge.create(lab.library, VOLSER)
            ip = lab.drive_ips["drive-01"]
            await vop_load(ip, VOLSER)  # the operator loads the cartridge
            ready.send(ip)
            while not stop.is_set():
                await asyncio.sleep(0.1)

    asyncio.run(main())


def drive_half(workdir: Path, blocks: list[bytes], rounds: int, window: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    stop = ctx.Event()
    proc = ctx.Process(target=_lab, args=(str(workdir / "lab"), child, stop))
    proc.start()
    try:
        if not parent.poll(60):
            raise SystemExit("the lab did not start within 60 s")
        drive_ip = parent.recv()

        async def run() -> dict[str, float]:
            async with open_tape(drive_ip) as tape:
                return await through(tape, blocks, rounds, window)
        return asyncio.run(run())
    finally:
        stop.set()
        proc.join(30)
        if proc.is_alive():
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--block-kib", type=int, default=256)
    parser.add_argument("--window", type=int, default=16, help="commands in flight (default 16)")
    parser.add_argument("--only", choices=("tgt", "drive"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    block = args.block_kib * 1024
    rounds = max(1, args.size_mib * 1024 * 1024 // block)
    blocks = [os.urandom(block) for _ in range(16)]
    result: dict[str, Any] = {"size_mib": args.size_mib, "block_kib": args.block_kib, "window": args.window}
    with tempfile.TemporaryDirectory(prefix="t10k-bench-") as tmp:
        if args.only != "drive":
            result["tgt"] = tgt_half(Path(tmp), blocks, rounds, args.window, args.size_mib)
        if args.only != "tgt":
            result["ours"] = drive_half(Path(tmp), blocks, rounds, args.window)
    if "tgt" in result and "ours" in result:
        result["write_ratio"] = result["ours"]["write_mb_s"] / result["tgt"]["write_mb_s"]
        result["read_ratio"] = result["ours"]["read_mb_s"] / result["tgt"]["read_mb_s"]
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.size_mib} MiB in {args.block_kib} KiB blocks, {args.window} commands in flight, one initiator")
    for who, label in (("tgt", "tgt SSC LUN (clear)      "), ("ours", "our drive (encrypting)   ")):
        if who in result:
            print(f"{label} write {result[who]['write_mb_s']:8.1f} MB/s   read {result[who]['read_mb_s']:8.1f} MB/s")
    if "write_ratio" in result:
        print(f"ours/tgt                  write {result['write_ratio']:8.2f}        read {result['read_ratio']:8.2f}"
              f"   (target: write >= 0.5)")


if __name__ == "__main__":
    main()
