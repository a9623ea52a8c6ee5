"""Decoding a pool rekey capture: `t10k pcap decode` against tshark with our Lua dissector.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/pcap_decode.py [--drives 1000]'

It first makes the capture by a real run (bench/rekey_capture.py's: one token, N drives in
one host process, EKT then OKT, every datagram and TCP payload captured at the sockets),
then, in the same run, decodes it with both tools, each writing every field of every
message to /dev/null: `t10k pcap decode FILE --json` and `tshark -X lua_script:... -r FILE
-V`. It prints wall-clock seconds (min/median/max of the rounds) and the ratio. Run it in
its own network namespace: the drive addresses are fixed (127.1.x.y).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from rekey_capture import run  # noqa: E402

from protocol.pcap import CaptureWriter  # noqa: E402


def make_capture(drives: int, workdir: Path) -> Path:
    path = workdir / f"rekey-{drives}.pcap"
    with CaptureWriter(path) as writer:
        asyncio.run(run(drives, workdir / "run", tap=writer))
    return path


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="also copy the capture here")
    args = ap.parse_args()
    if args.drives < 1 or args.rounds < 1:
        ap.error("--drives and --rounds must be at least 1")
    tshark = shutil.which("tshark")
    if tshark is None:
        ap.error("tshark is not installed (scripts/bootstrap test installs it)")
    with tempfile.TemporaryDirectory() as d:
        capture = make_capture(args.drives, Path(d))
        if args.keep:
            shutil.copy(capture, args.keep)
        ours = [sys.executable, "-m", "lab.cli", "pcap", "decode", str(capture), "--json"]
        theirs = [tshark, "-X", f"lua_script:{ROOT / 'wireshark' / 't10k.lua'}", "-r", str(capture), "-V"]
        times: dict[str, list[float]] = {"t10k pcap decode": [], "tshark + t10k.lua": []}
        for _ in range(args.rounds):
            times["t10k pcap decode"].append(timed(ours))
            times["tshark + t10k.lua"].append(timed(theirs))
        size = capture.stat().st_size
    print(f"capture of a {args.drives}-drive EKT and OKT: {size / 2**20:.1f} MiB")
    for name, t in times.items():
        print(f"  {name:20} {min(t):.2f}/{statistics.median(t):.2f}/{max(t):.2f} s (min/median/max of {args.rounds})")
    ratio = statistics.median(times["t10k pcap decode"]) / statistics.median(times["tshark + t10k.lua"])
    print(f"  ours / tshark: x{ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
