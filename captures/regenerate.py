"""Regenerate the reference captures in this directory from real runs of the lab.

    .venv/bin/python captures/regenerate.py [--out DIR]

Each is a scenario on loopback (see lab/captures.py), captured at the daemons' sockets,
and checked: no key the lab used may occur in it. They run on the fixed addresses of the
docs (127.0.0.0/24, drive LAN port 7010: ``--net 127.0.0.0/24``), so nothing else may use
those while they are regenerated.

Deterministic where the protocol allows: in this script (never in the daemons) every key,
PCkey, token ID and nonce comes from a fixed seed, each drive's pull delays from a fixed
seed, and the wall clock starts at a fixed epoch in 10 ms steps, so KMS IDs, key IDs,
CSNs and the keys are the same on every run. What real concurrency decides still varies:
the order in which the event loop serves simultaneous pulls, and so the nonces and
timestamps drawn after it.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
from types import SimpleNamespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED = b"t10k-lab reference captures v1"
EPOCH = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def make_deterministic() -> None:
    counter = 0

    def urandom(n: int) -> bytes:
        nonlocal counter
        counter += 1
        return hashlib.shake_256(SEED + counter.to_bytes(8, "big")).digest(n)

    start = time.monotonic()

    def clock() -> float:  # a fixed epoch, in 10 ms steps (the KMS keeps its stamps strictly increasing)
        return EPOCH + round(time.monotonic() - start, 2)

    os.urandom = urandom  # type: ignore[assignment]
    time.time = clock  # type: ignore[assignment]
    time.time_ns = lambda: int(clock() * 1e9)  # type: ignore[assignment]

    import drive_daemon.drive as drive_module

    seeds = iter(range(1, 1 << 30))

    class SeededRandom(random.Random):
        def __init__(self, seed: object = None) -> None:  # each drive's pull delays from a fixed seed
            super().__init__(next(seeds) if seed is None else seed)

    drive_module.random = SimpleNamespace(Random=SeededRandom)  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(description="regenerate the reference captures")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    make_deterministic()
    from lab.addresses import DEFAULT_NET
    from lab.captures import capture_all

    for name, secrets in capture_all(args.out, net=DEFAULT_NET).items():  # fixed addresses: 127.0.0.0/24, LAN 7010
        data = (args.out / f"{name}.pcap").read_bytes()
        leaked = [s for s in secrets if s in data]
        print(f"{name}.pcap: {len(data)} octets, {len(secrets)} keys checked, {'LEAK' if leaked else 'no key'} in it")
        if leaked:
            sys.exit(1)


if __name__ == "__main__":
    main()
