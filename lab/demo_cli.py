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

from .cluster import LabTimeout
from .demo import render_step, run_demo


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    lab = sub.add_parser("lab", help="labs that run every part together")
    lsub = lab.add_subparsers(dest="lab_command", required=True)
    demo = lsub.add_parser("demo", help="enrol and arm eight drives from two tokens on loopback, then show "
                                        "an outdated token refused")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--keep", type=Path, help="keep the lab's files (KMS store, token and drive state) here")
    demo.add_argument("--capture", type=Path, help="write every datagram and TCP frame to this pcap")
    demo.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="t10k-demo-"))
    if args.keep and any(args.keep.iterdir() if args.keep.exists() else []):
        raise ValueError(f"--keep {args.keep} must be a new or empty directory")
    started = time.monotonic()
    progress = None if args.json else (lambda step: print(render_step(step), flush=True))
    capture = None
    if args.capture is not None:
        from protocol.pcap import CaptureWriter

        capture = CaptureWriter(args.capture)
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
