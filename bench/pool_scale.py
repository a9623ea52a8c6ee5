"""How a pool scales: one token serving N drives, token and drive host in separate processes.

    python bench/pool_scale.py [--drives 100,1000,5000,10000] [--runs 3] [--loss 0.05] [--json]

As deployed: the token is ``t10k token run`` and the drive host runs every drive of a
manufacturing file in one process (bench/pool_host.py, which is ``t10k drive run-many``
plus a report of when every drive got there); the KMS is this process. For each pool size
it measures, ``--runs`` times: the KMS building the OKT, EKT write until every drive holds
its device key, OKT write until every drive is armed, drives armed per second, datagrams
per drive, the drive host's file descriptors and RSS. Then, with ``--loss`` of the UDP
datagrams dropped at random by nftables, the time the largest pool takes to converge.

It runs in a network namespace of its own (it re-runs itself under ``unshare -n``, so it
needs root and nftables), where the drive host may take the wildcard address and where
the loss rule touches nothing else. Every phase is bounded by ``--timeout``.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drive_daemon.manufacturing import write_manufacturing_file  # noqa: E402
from bench.netns import in_own_namespace  # noqa: E402
from bench.pool_sizes import pool_sizes  # noqa: E402
from bench.kms_pool import map_pool  # noqa: E402
from kms_client import station  # noqa: E402
from kms_client.builders import build_okt  # noqa: E402
from kms_client.store import KmsStore  # noqa: E402
from protocol.constants import TOKEN_MGMT_PORT  # noqa: E402
from protocol.manufacturing import make_drives  # noqa: E402

TOKEN_IP = "127.0.9.1"
FIRST_DRIVE_IP = "127.1.0.1"
NFT_TABLE = "t10k_bench_loss"
HERE = Path(__file__).resolve().parent


class Child:
    """A daemon this bench started: its JSON lines, read as they come."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process) -> None:
        self.name, self.proc = name, proc
        self.lines: dict[str, dict[str, Any]] = {}
        self._arrived: dict[str, asyncio.Event] = {}
        self._reader = asyncio.ensure_future(self._read())
        self._profiler: asyncio.subprocess.Process | None = None

    @classmethod
    async def start(cls, name: str, argv: list[str], profile: Path | None = None) -> Child:
        """Start a daemon; with ``profile``, ``py-spy record`` attached to it writes PROFILE.txt
        (collapsed stacks) until the daemon is stopped."""
        proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=None)
        child = cls(name, proc)
        if profile is not None:
            profile.parent.mkdir(parents=True, exist_ok=True)
            child._profiler = await asyncio.create_subprocess_exec(
                "py-spy", "record", "--format", "raw", "--rate", "200", "--pid", str(proc.pid),
                "-o", str(profile.with_suffix(".txt")), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return child

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            status = record.get("status", "")
            self.lines[status] = record
            self._event(status).set()

    def _event(self, status: str) -> asyncio.Event:
        return self._arrived.setdefault(status, asyncio.Event())

    async def wait_for(self, status: str, timeout: float) -> dict[str, Any] | None:
        """The line with this status, or None if it did not come in time (or the process died)."""
        done = asyncio.ensure_future(self._event(status).wait())
        died = asyncio.ensure_future(self.proc.wait())
        await asyncio.wait({done, died}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        died.cancel()
        return self.lines.get(status)

    async def stop(self) -> dict[str, Any] | None:
        if self._profiler is not None:
            self._profiler.send_signal(signal.SIGINT)  # py-spy writes its profile and detaches
            await asyncio.wait_for(self._profiler.wait(), 60)
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 60)
        except asyncio.TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await asyncio.wait({self._reader}, timeout=10)
        return self.lines.get("stopped")


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("VmRSS:")), 0)
    except OSError:
        return 0


def t10k() -> list[str]:
    script = Path(sys.executable).with_name("t10k")
    return [str(script)] if script.exists() else [sys.executable, "-m", "lab.cli"]


async def run(n: int, workdir: Path, timeout: float, sockets: str | None,
              profile: Path | None = None) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    kms = KmsStore.create(workdir / "kms", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x09")
    made = make_drives(n, first_serial=0x5800_0000_0000_0000)
    write_manufacturing_file(workdir / "drives.json", made)
    for i, m in enumerate(made):
        kms.add_drive(f"d{i}", m.csn, m.pckey, m.model)
    secret_file = workdir / "token.secret"
    secret_file.write_text(kms.add_token("tok", TOKEN_IP, TOKEN_MGMT_PORT).hex())
    secret_file.chmod(0o600)
    result: dict[str, Any] = {"drives": n}
    token = await Child.start("token", t10k() + [
        "token", "run", "--ip", TOKEN_IP, "--state", str(workdir / "tok"), "--secret-file", str(secret_file),
        "--announce-interval", "2", "--json"], profile and profile / f"token-{n}")
    host_argv = [sys.executable, os.environ.get("T10K_POOL_HOST", str(HERE / "pool_host.py")), "--manufacturing", str(workdir / "drives.json"),
                 "--first-ip", FIRST_DRIVE_IP, "--state", str(workdir / "drives")]
    host = await Child.start("drive host", host_argv + (["--sockets", sockets] if sockets else []),
                             profile and profile / f"host-{n}")
    try:
        for child in (token, host):
            if await child.wait_for("serving", timeout) is None:
                raise RuntimeError(f"the {child.name} did not start (exit {child.proc.returncode})")
        serving = host.lines["serving"]
        result |= {"host_start_s": serving["start_s"], "host_fds": serving["fds"]}
        names = [f"d{i}" for i in range(n)]
        t0 = time.time()
        await station.write_ekt(kms, "tok", names, use_pckey=True, timeout_s=timeout)
        result["ekt_written_s"] = time.time() - t0
        enrolled = await host.wait_for("enrolled", timeout)
        result["ekt_to_enrolled_s"] = enrolled["at"] - t0 if enrolled else None
        pool = map_pool(kms, names)
        b0 = time.perf_counter()
        build_okt(kms, pool)
        result["okt_build_s"] = time.perf_counter() - b0
        t0 = time.time()
        await station.write_okt(kms, "tok", pool, timeout_s=timeout)
        result["okt_written_s"] = time.time() - t0
        armed = await host.wait_for("armed", timeout)
        result["okt_to_armed_s"] = armed["at"] - t0 if armed else None
        if armed:  # when the first drive heard of the OKT, and when half and 90% were armed
            result["okt_marks_s"] = {k: round(v - t0, 3) for k, v in armed["marks"].items()
                                     if k.startswith(("heard_okt", "armed_"))}
        result["host_rss_mib"] = rss_kib(host.proc.pid) / 1024
        result["token_rss_mib"] = rss_kib(token.proc.pid) / 1024
    finally:
        host_end = await host.stop()
        token_end = await token.stop()
        kms.close()
    if host_end:
        result |= {"armed": host_end["armed"], "enrolled": host_end["enrolled"],
                   "pulls_given_up": host_end["pulls_given_up"],
                   "host_datagrams_out_per_drive": host_end["datagrams_out"] / n}
    if token_end:
        result["packages_served_per_drive"] = token_end["events"].get("PackageServed", 0) / n
    return result


def set_loss(fraction: float) -> None:
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True)
    if fraction <= 0:
        return
    per_10k = round(fraction * 10_000)
    for rule in (["add", "table", "inet", NFT_TABLE],
                 ["add", "chain", "inet", NFT_TABLE, "input", "{ type filter hook input priority 0 ; }"],
                 ["add", "rule", "inet", NFT_TABLE, "input", "meta", "l4proto", "udp",
                  "numgen", "random", "mod", "10000", "<", str(per_10k), "drop"]):
        subprocess.run(["nft", *rule], check=True)


def spread(values: list[float | None]) -> dict[str, float | None]:
    got = [v for v in values if v is not None]
    if len(got) < len(values) or not got:
        return {"min": min(got, default=None), "median": None, "max": None, "missing": len(values) - len(got)}
    return {"min": min(got), "median": statistics.median(got), "max": max(got)}


def summarise(n: int, runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("okt_build_s", "ekt_to_enrolled_s", "okt_to_armed_s", "ekt_written_s", "okt_written_s", "host_rss_mib", "token_rss_mib",
            "packages_served_per_drive", "host_datagrams_out_per_drive", "host_start_s", "host_fds")
    out: dict[str, Any] = {"drives": n, "runs": runs}
    for k in keys:
        out[k] = spread([r.get(k) for r in runs])
    armed = out["okt_to_armed_s"]["median"]
    out["armed_per_s"] = n / armed if armed else None
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=pool_sizes, default="100,1000,5000,10000", help="pool sizes, comma-separated; the first is the baseline")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loss", type=float, default=0.05, help="fraction of UDP datagrams dropped in the loss run (0: none)")
    parser.add_argument("--loss-runs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds each phase may take")
    parser.add_argument("--sockets", default="shared", help="the drive host's socket mode")
    parser.add_argument("--profile", type=Path, help="record each daemon with py-spy into this directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = args.drives
    in_own_namespace(__file__, sys.argv[1:])
    logging.getLogger("t10k.kms.backup").setLevel(logging.ERROR)  # a bench KMS keeps no backups
    report: dict[str, Any] = {"sizes": [], "loss": None}
    with tempfile.TemporaryDirectory(prefix="pool-scale-") as d:
        set_loss(0)
        for n in sizes:
            runs = [asyncio.run(run(n, Path(d) / f"n{n}-r{i}", args.timeout, args.sockets, args.profile))
                    for i in range(args.runs)]
            report["sizes"].append(summarise(n, runs))
            print(_line(report["sizes"][-1]), file=sys.stderr, flush=True)
        if args.loss > 0:
            set_loss(args.loss)
            try:
                n = sizes[-1]
                runs = [asyncio.run(run(n, Path(d) / f"loss-n{n}-r{i}", args.timeout, args.sockets))
                        for i in range(args.loss_runs)]
            finally:
                set_loss(0)
            report["loss"] = summarise(n, runs) | {"fraction": args.loss}
            print(f"with {args.loss:.0%} UDP loss: " + _line(report["loss"]), file=sys.stderr, flush=True)
    base = report["sizes"][0]
    for size in report["sizes"]:
        size["per_drive_vs_baseline"] = {
            k: (size[k]["median"] / size["drives"]) / (base[k]["median"] / base["drives"])
            for k in ("okt_build_s", "ekt_to_enrolled_s", "okt_to_armed_s")
            if size[k]["median"] and base[k]["median"]}
    if args.json:
        print(json.dumps(report, indent=2))
        return
    print(f"baseline {base['drives']} drives; per-drive cost against it:")
    for size in report["sizes"]:
        print(f"  {size['drives']:>6}: " + ", ".join(f"{k} x{v:.2f}" for k, v in size["per_drive_vs_baseline"].items()))


def _fmt(s: dict[str, Any], unit: str = "s") -> str:
    if s["median"] is None:
        return f"missing in {s.get('missing')} run(s)"
    return f"{s['min']:.2f}/{s['median']:.2f}/{s['max']:.2f} {unit}"


def _line(r: dict[str, Any]) -> str:
    aps = f"{r['armed_per_s']:.0f}" if r["armed_per_s"] else "-"
    last = r["runs"][-1]
    return (f"{r['drives']:>6} drives (min/median/max): OKT->armed {_fmt(r['okt_to_armed_s'])}, "
            f"(token had it after {_fmt(r['okt_written_s'])}), EKT->enrolled {_fmt(r['ekt_to_enrolled_s'])} "
            f"(token had it after {_fmt(r['ekt_written_s'])}), OKT built {_fmt(r['okt_build_s'])}, "
            f"{aps} armed/s, packages served/drive (EKT+OKT) {_fmt(r['packages_served_per_drive'], '')}, "
            f"host RSS {_fmt(r['host_rss_mib'], 'MiB')}, host fds {_fmt(r['host_fds'], '')}, "
            f"armed {last.get('armed')}/{r['drives']}, pulls given up {last.get('pulls_given_up')}; "
            f"last run after the OKT write: {last.get('okt_marks_s')}")


if __name__ == "__main__":
    main()
