"""A drive host's own work per drive in a pool rekey, without sockets, a token or other processes.

    python bench/host_work.py [--drives 100,10000] [--runs 3] [--json]

bench/pool_scale.py measures the whole system, and on a 2-vCPU machine its figures move
with whatever else runs. This one keeps only the drive host's CPU: one process hosts N
drives holding device keys (as after an EKT), and is handed, as its sockets would hand
them, an OKT announcement, the pull deadlines coming due, each drive's package, the
announcement twice more (tokens repeat it), and then waits for the NVRAM commits and the
acknowledgements behind them. Sends go to a link that only counts them (the kernel's part
is bench/udp_send.py). Prints CPU microseconds per drive of each phase (process time, the
NVRAM writer thread included), min/median/max of ``--runs``, and the ratio of each pool
size's median total to the first size's (the baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drive_daemon.drive import MediaKeysAccepted  # noqa: E402
from drive_daemon.nvram import Nvram, encode_nvram  # noqa: E402
from drive_daemon.nvram_store import STORE_NAME, NvramStore  # noqa: E402
from drive_daemon.service import DriveHost, DriveHostConfig  # noqa: E402
from netcheck.heap import settle_heap  # noqa: E402
from bench.pool_sizes import pool_sizes  # noqa: E402
from protocol import KeysAvailable, MediaKeyPackage, encode, envelope  # noqa: E402
from protocol.constants import DRIVE_LAN_PORT, RECEIPT_SIZE, TOKEN_LAN_PORT, TokenMode  # noqa: E402
from protocol.manufacturing import make_drives  # noqa: E402

TOKEN_IP = "127.0.9.1"
OKT_TIMESTAMP = 200
WRITE_KEY_ID = b"K" * 8
PHASES = ("announce", "requests", "packages", "commits_and_acks", "announce_again")


class CountingLink:
    """A drive's link that takes every datagram and sends nothing."""

    def __init__(self, sent: list[int]) -> None:
        self.sent = sent

    def send(self, data: bytes, to: tuple[str, int]) -> bool:
        self.sent[0] += 1
        return True

    async def close(self) -> None:
        pass


def prepare(n: int, state: Path) -> tuple[list, bytes, dict[bytes, bytes]]:
    """N drives with device keys in the host's store; the OKT announcement and packages a KMS
    would have made for them."""
    made = make_drives(n, first_serial=0x5800_0000_0000_0000)
    signing = envelope.new_signing_key()
    public = envelope.public_key_of(signing)
    device_keys = {m.csn: (os.urandom(32), os.urandom(8)) for m in made}
    store = NvramStore(state / STORE_NAME)
    try:
        store.import_rows({m.csn: encode_nvram(m.csn, m.pckey, Nvram(*device_keys[m.csn], 100, 0, False, public))
                           for m in made})
    finally:
        store.close()
    signed = envelope.sign_announcement(signing, TokenMode.OKT, OKT_TIMESTAMP, [m.csn for m in made])
    offer = encode(KeysAvailable(b"T" * 8, TokenMode.OKT, OKT_TIMESTAMP, signed.csn_count, signed.csn_filter,
                                 signed.signature))
    media = {WRITE_KEY_ID: os.urandom(32)}
    packages = {}
    for m in made:
        device_key, key_id = device_keys[m.csn]
        wrapper = envelope.MediaKeyWrapper(device_key)
        header = envelope.media_package_header(m.csn, OKT_TIMESTAMP, key_id, WRITE_KEY_ID, media)
        packages[m.csn] = encode(MediaKeyPackage(
            m.csn, OKT_TIMESTAMP, key_id, WRITE_KEY_ID, wrapper.wrap_receipt(header, os.urandom(RECEIPT_SIZE)),
            tuple(wrapper.wrap_key(m.csn, OKT_TIMESTAMP, k, v) for k, v in media.items())))
    return made, offer, packages


async def one_run(n: int) -> dict[str, float]:
    state = Path(tempfile.mkdtemp(prefix="t10k-host-work-"))
    try:
        made, offer, packages = prepare(n, state)
        host = DriveHost(DriveHostConfig(state_dir=state),
                         [(m, f"127.1.{i // 250}.{i % 250 + 1}") for i, m in enumerate(made)])
        armed: set[bytes] = set()
        host.subscribe(lambda csn, event: armed.add(csn) if isinstance(event, MediaKeysAccepted) else None)
        sent = [0]
        for hosted in host.drives.values():
            hosted.powered, hosted.link = True, CountingLink(sent)
            # as after its EKT: the unwrapping key derived and the NVRAM image made once
            hosted.drive._media_wrapper(hosted.drive.nvram.device_key)
            encode_nvram(hosted.csn, hosted.made.pckey, hosted.drive.nvram)
        thresholds = gc.get_threshold()
        settle_heap()  # as `t10k drive run-many` does once its drives are up
        token = (TOKEN_IP, TOKEN_LAN_PORT)
        cpu: dict[str, float] = {}

        def timed(name: str, work: Callable[[], None]) -> None:
            start = time.process_time()
            work()
            cpu[name] = time.process_time() - start

        timed("announce", lambda: host._lan(offer, (TOKEN_IP, DRIVE_LAN_PORT)))
        due = time.time() + 3600  # every pull's deadline has come

        def requests() -> None:
            for hosted in host.drives.values():
                hosted.deadline_reached(due)

        timed("requests", requests)

        def deliver() -> None:
            for hosted in host.drives.values():
                hosted._unicast(packages[hosted.csn], token)

        timed("packages", deliver)
        start = time.process_time()
        await host.flush()
        cpu["commits_and_acks"] = time.process_time() - start
        timed("announce_again", lambda: host._lan(offer, (TOKEN_IP, DRIVE_LAN_PORT)))
        if len(armed) != n or sent[0] != 2 * n:
            raise RuntimeError(f"{len(armed)} of {n} drives armed, {sent[0]} datagrams sent (expected {2 * n})")
        for hosted in host.drives.values():
            hosted.link = None
        await host.stop()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
        return {k: v / n * 1e6 for k, v in cpu.items()}
    finally:
        shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=pool_sizes, default="100,10000", help="pool sizes, comma-separated; the first is the baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = args.drives
    if args.runs < 1:
        parser.error("--runs takes at least 1")
    report = []
    for n in sizes:
        runs = [asyncio.run(one_run(n)) for _ in range(args.runs)]
        per_phase = {p: [r[p] for r in runs] for p in PHASES}
        totals = [sum(r.values()) for r in runs]
        report.append({"drives": n, "us_per_drive": {p: _spread(v) for p, v in per_phase.items()},
                       "total_us_per_drive": _spread(totals)})
    base = report[0]["total_us_per_drive"]["median"]
    for entry in report:
        entry["total_vs_baseline"] = round(entry["total_us_per_drive"]["median"] / base, 2)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    for entry in report:
        phases = ", ".join(f"{p} {entry['us_per_drive'][p]['median']:.1f}" for p in PHASES)
        t = entry["total_us_per_drive"]
        print(f"{entry['drives']:>6} drives: CPU us per drive (medians) {phases}; total "
              f"{t['min']:.1f}/{t['median']:.1f}/{t['max']:.1f} (x{entry['total_vs_baseline']} of {sizes[0]} drives)")


def _spread(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


if __name__ == "__main__":
    main()
