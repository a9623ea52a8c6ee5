"""The first part of an OKT's timeline: from the KMS starting the write until the token holds it.

    python bench/okt_write.py [--drives 10000] [--rounds 5] [--json]

What ``bench/pool_scale.py`` reports as "token had it after", without the drives: the KMS
is this process (its store in a temporary directory, N drives enrolled by a real EKT), the
token is ``t10k token run`` in a process of its own, as deployed. Each round re-applies the
pool's mapping (a new timestamp) and writes the OKT as ``station.write_okt`` does, timing
its three steps: settling earlier writes, building the OKT (kms_client/builders.py), and the
push (intent recorded, encoded and sealed, sent, decoded, checked and persisted by the token,
answered, committed). The push's encoding is also timed alone, once per round, outside the
total. Beside wall-clock times, the CPU time of the build (this process) and of the token
during the push (from /proc, in clock ticks): steadier than wall time on a shared machine.
Times are min/median/max over the rounds.

It runs in a network namespace of its own (it re-runs itself under ``unshare -n``: root).
The token is started from the tree this file is in (``python -m lab.cli``), so a copy of
another revision can be run side by side with this one (A B A B) to compare them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.netns import in_own_namespace  # noqa: E402
from bench.kms_pool import map_pool  # noqa: E402
from kms_client import station  # noqa: E402
from kms_client.builders import prepare_okt  # noqa: E402
from kms_client.store import KmsStore  # noqa: E402
from protocol import encode_authenticated  # noqa: E402
from protocol.constants import TOKEN_MGMT_PORT  # noqa: E402
from protocol.manufacturing import make_drives  # noqa: E402

TOKEN_IP = "127.0.9.1"


async def _start_token(workdir: Path, secret_file: Path, timeout: float) -> asyncio.subprocess.Process:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.cli", "token", "run", "--ip", TOKEN_IP, "--state", str(workdir / "tok"),
        "--secret-file", str(secret_file), "--announce-interval", "2", "--json",
        stdout=subprocess.PIPE, cwd=str(ROOT), env=env)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    if json.loads(line or b"{}").get("status") != "serving":
        raise RuntimeError(f"the token did not start (exit {proc.returncode})")
    return proc


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 60)
    except asyncio.TimeoutError:
        proc.kill()
        await proc.wait()


async def run(n: int, rounds: int, workdir: Path, timeout: float) -> list[dict[str, float]]:
    kms = KmsStore.create(workdir / "kms", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x09")
    names = [f"d{i}" for i in range(n)]
    with kms.transaction():
        for name, made in zip(names, make_drives(n, first_serial=0x5800_0000_0000_0000), strict=True):
            kms.add_drive(name, made.csn, made.pckey, made.model)
    secret_file = workdir / "token.secret"
    secret_file.write_text(kms.add_token("tok", TOKEN_IP, TOKEN_MGMT_PORT).hex())
    secret_file.chmod(0o600)
    token = await _start_token(workdir, secret_file, timeout)
    results = []
    try:
        await station.write_ekt(kms, "tok", names, use_pckey=True, timeout_s=timeout)
        pool = map_pool(kms, names)
        for _ in range(rounds):
            kms.apply_mapping(pool)
            # station.write_okt, step by step
            t0 = time.perf_counter()
            await station._settle_leftovers(kms, timeout)
            t1, c1 = time.perf_counter(), time.process_time()
            prepared = prepare_okt(kms, pool)
            t2, c2, token_cpu = time.perf_counter(), time.process_time(), cpu_s(token.pid)
            await station.push_write(kms, "tok", prepared, timeout)
            t3, token_cpu = time.perf_counter(), cpu_s(token.pid) - token_cpu
            encode_authenticated(prepared.message, secret=kms.token_secret("tok"), counter=1)
            t4 = time.perf_counter()
            results.append({"total_s": t3 - t0, "settle_s": t1 - t0, "build_s": t2 - t1, "build_cpu_s": c2 - c1,
                            "push_s": t3 - t2, "token_cpu_s": token_cpu, "encode_s": t4 - t3})
    finally:
        await _stop(token)
        kms.close()
    return results


def cpu_s(pid: int) -> float:
    """User plus system CPU time of a process so far (the token's share of a push)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def spread(values: list[float]) -> dict[str, float]:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds a write may take")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    in_own_namespace(__file__, sys.argv[1:])
    logging.getLogger("t10k.kms.backup").setLevel(logging.ERROR)  # a bench KMS keeps no backups
    with tempfile.TemporaryDirectory(prefix="okt-write-") as d:
        results = asyncio.run(run(args.drives, args.rounds, Path(d), args.timeout))
    summary = {k: spread([r[k] for r in results]) for k in results[0]}
    if args.json:
        print(json.dumps({"drives": args.drives, "rounds": results, "summary": summary}, indent=2))
        return
    print(f"{args.drives} drives, {args.rounds} rounds (min/median/max): " + ", ".join(
        f"{k[:-2]} {s['min']:.3f}/{s['median']:.3f}/{s['max']:.3f} s" for k, s in summary.items()))


if __name__ == "__main__":
    main()
