"""``t10k lab demo``: the main job."""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from protocol.cli_options import add_capture, add_json

from .cluster import LabTimeout
from .demo import render_step, run_demo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lab = sub.add_parser("lab", help="labs that run every part together")
    lsub = lab.add_subparsers(dest="lab_command", required=True)
    demo = lsub.add_parser("demo", help="enrol and arm eight drives from two tokens on loopback, then show "
                                        "an outdated token refused")
    add_json(demo, "print the report as JSON")
    demo.add_argument("--keep", type=Path, help="keep the lab's files (KMS store, token and drive state) here")
    add_capture(demo, "write every datagram and TCP frame to this pcap")
    demo.set_defaults(func=_demo)

    up = lsub.add_parser("up", help="bring a topology up as separate processes, enrol and arm every site")
    up.add_argument("topology", type=Path, help="a TOML topology, e.g. lab/topologies/company-xyz.toml")
    up.add_argument("--state", type=Path, required=True, help="a new directory for the KMS store and daemon state")
    up.add_argument("--mode", choices=["auto", "netns", "loopback"], default="auto",
                    help="netns: a namespace per token bay and per drive library on a bridge (root); "
                         "loopback: 127.18.*.* addresses; auto: netns when root")
    up.add_argument("--once", action="store_true", help="arm, print the status, tear down and exit")
    add_json(up)
    up.set_defaults(func=_up)

    from .captures import SCENARIOS

    scenario = lsub.add_parser("scenario", help="run one of the seed's scenarios on loopback, symptoms checked "
                                                "(docs/SCENARIOS.md)")
    scenario.add_argument("name", choices=sorted(SCENARIOS))
    add_capture(scenario, "also write its traffic to this pcap")
    add_json(scenario)
    scenario.set_defaults(func=_scenario)

    from .guest import cli as guest_cli

    guest_cli.register(lsub)

    down = lsub.add_parser("down", help="remove the namespaces and bridge a crashed 'lab up' left behind")
    down.add_argument("topology", type=Path)
    add_json(down)
    down.set_defaults(func=_down)


def _demo(args: argparse.Namespace) -> int:
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="t10k-demo-"))
    if args.keep and any(args.keep.iterdir() if args.keep.exists() else []):
        raise ValueError(f"--keep {args.keep} must be a new or empty directory")
    started = time.monotonic()
    progress = None if args.json else (lambda step: print(render_step(step), flush=True))
    from protocol.pcap import CaptureWriter

    capture = CaptureWriter.optional(args.capture)
    try:
        report = asyncio.run(run_demo(workdir, progress=progress, tap=capture))
    except LabTimeout as exc:
        print(f"t10k: demo failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if capture is not None:
            capture.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started
    if args.json:
        print(json.dumps(report.to_json() | {"seconds": round(elapsed, 2)}, indent=2))
    else:
        verdict = "every drive refused the outdated token" if report.ok else "NOT every drive refused the outdated token"
        print(f"\ndemo finished in {elapsed:.1f} s: {verdict}.")
        if capture is not None:
            print(f"{capture.packets} packets captured to {args.capture} (t10k pcap decode {args.capture})")
    return 0 if report.ok else 1


def _up(args: argparse.Namespace) -> int:
    import signal as _signal

    from .netlab import NetLabError, NetworkLab, can_use_netns
    from .topology import load_topology

    topology = load_topology(args.topology)
    netns = can_use_netns() if args.mode == "auto" else args.mode == "netns"
    if netns and not can_use_netns():
        raise NetLabError("network namespaces need root and iproute2; use --mode loopback")
    lab = NetworkLab(topology, args.state, netns=netns)
    started = time.monotonic()
    lab.up()
    try:
        asyncio.run(lab.arm())
        rows = asyncio.run(lab.status())
        if args.json:
            print(json.dumps({"topology": topology.name, "mode": "netns" if netns else "loopback",
                              "seconds": round(time.monotonic() - started, 2), "drives": rows}, indent=2))
        else:
            print(f"{topology.name}: {len(topology.sites)} site(s) up in {'netns' if netns else 'loopback'} mode, "
                  f"armed in {time.monotonic() - started:.1f} s")
            for r in rows:
                print(f"  {r['site']:<14} {r['drive']:<18} {r['ip']:<15} {r['led']:<6} write key {r['write_key']:<4}"
                      f" {r['keys']} key(s)  OKT {r['okt_time']}")
        if not args.once:
            print("running; Ctrl-C (or SIGTERM) tears it down", file=sys.stderr if args.json else sys.stdout, flush=True)
            stop = asyncio.Event()

            async def wait() -> None:
                loop = asyncio.get_running_loop()
                for sig in (_signal.SIGINT, _signal.SIGTERM):
                    loop.add_signal_handler(sig, stop.set)
                await stop.wait()
            asyncio.run(wait())
    finally:
        lab.down()
    return 0


def _down(args: argparse.Namespace) -> int:
    from .netlab import NetworkLab
    from .topology import load_topology

    NetworkLab(load_topology(args.topology), Path("/nonexistent"), netns=True).network_down()
    print(json.dumps({"topology": str(args.topology), "removed": True}) if args.json
          else "namespaces and bridge removed")
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from protocol.pcap import CaptureWriter

    from .captures import SCENARIOS

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix=f"t10k-{args.name}-") as work:
        if args.capture:
            with CaptureWriter(args.capture) as capture:
                asyncio.run(SCENARIOS[args.name](Path(work) / "lab", capture))
        else:
            asyncio.run(SCENARIOS[args.name](Path(work) / "lab", lambda *a: None))  # type: ignore[arg-type]
    doc = (SCENARIOS[args.name].__doc__ or "").strip().splitlines()[0]
    if args.json:
        print(json.dumps({"scenario": args.name, "title": doc, "ok": True,
                          "seconds": round(time.monotonic() - started, 2),
                          "capture": str(args.capture) if args.capture else None}, indent=2))
        return 0
    print(f"{args.name}: {doc}\ndone, every symptom checked as it ran, in "
          f"{time.monotonic() - started:.1f} s" + (f"; traffic in {args.capture}" if args.capture else ""))
    return 0
