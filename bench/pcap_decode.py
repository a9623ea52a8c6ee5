"""Decoding a pool rekey capture: `t10k pcap decode` against tshark with our Lua dissector.

    unshare -n sh -c 'ip link set lo up && .venv/bin/python bench/pcap_decode.py [--drives 1000]'

It first makes the capture by a real run (bench/rekey_capture.py's: one token, N drives in
one host process, EKT then OKT, every datagram and TCP payload captured at the sockets),
then, in the same run, decodes it with both tools, each writing every field of every
message to /dev/null: `t10k pcap decode FILE --json` and `tshark -X lua_script:... -r FILE
-V` (tshark also prints every IP and UDP/TCP field; it cuts long octet strings short, we
print them whole). Each tool runs once untimed first (file, libraries and bytecode in the
page cache), then the rounds alternate the two. It prints wall-clock seconds (min/median/max
of the rounds), the CPU seconds (user + system) each took, and the ratios: on a machine
shared with other jobs the CPU figures are the steadier ones. Run it in its own network
namespace: the drive addresses are fixed (127.1.x.y). ``--reuse FILE`` decodes a capture
kept earlier (``--keep``) instead of making one.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
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


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the child: user + system)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _spread(t: list[float]) -> str:
    return f"{min(t):.2f}/{statistics.median(t):.2f}/{max(t):.2f} s"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--drives", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="also copy the capture here")
    ap.add_argument("--reuse", type=Path, metavar="FILE", help="decode this capture instead of making one")
    args = ap.parse_args()
    if args.drives < 1 or args.rounds < 1:
        ap.error("--drives and --rounds must be at least 1")
    tshark = shutil.which("tshark")
    if tshark is None:
        ap.error("tshark is not installed (scripts/bootstrap test installs it)")
    with tempfile.TemporaryDirectory() as d:
        capture = args.reuse or make_capture(args.drives, Path(d))
        if args.keep:
            shutil.copy(capture, args.keep)
        tools = {
            "t10k pcap decode": [sys.executable, "-m", "lab.cli", "pcap", "decode", str(capture), "--json"],
            "tshark + t10k.lua": [tshark, "-X", f"lua_script:{ROOT / 'wireshark' / 't10k.lua'}", "-r", str(capture), "-V"],
        }
        for argv in tools.values():
            timed(argv)  # warm: the capture, the libraries and the bytecode are in the page cache
        wall: dict[str, list[float]] = {name: [] for name in tools}
        cpu: dict[str, list[float]] = {name: [] for name in tools}
        for _ in range(args.rounds):
            for name, argv in tools.items():
                w, c = timed(argv)
                wall[name].append(w)
                cpu[name].append(c)
        size = capture.stat().st_size
    what = f"{args.reuse.name}" if args.reuse else f"a {args.drives}-drive EKT and OKT"
    print(f"capture of {what}: {size / 2**20:.1f} MiB")
    for name in tools:
        print(f"  {name:20} wall {_spread(wall[name])}, CPU {_spread(cpu[name])} (min/median/max of {args.rounds})")
    ours, theirs = tools
    ratio = statistics.median(wall[ours]) / statistics.median(wall[theirs])
    cpu_ratio = statistics.median(cpu[ours]) / statistics.median(cpu[theirs])
    print(f"  ours / tshark: x{ratio:.2f} wall, x{cpu_ratio:.2f} CPU (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
