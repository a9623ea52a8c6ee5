"""``t10k drive ...`` and ``t10k vop ...``: run drives, make manufacturing files, ask a drive's VOP."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
from pathlib import Path

from protocol.constants import DRIVE_LAN_PORT, LOOPBACK_BROADCAST, VOP_PORT
from protocol.ids import cli_type, parse_csn

from protocol.sense import SenseProfile

from .manufacturing import find_drive, make_drives, read_manufacturing_file, write_manufacturing_file
from .service import DriveHost, DriveHostConfig
from .vop import vop_fields, vop_reset, vop_status


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    drive = sub.add_parser("drive", help="run emulated T10000 drives")
    dsub = drive.add_subparsers(dest="drive_command", required=True)

    run = dsub.add_parser("run", help="run one drive at its static IP until SIGINT/SIGTERM")
    run.add_argument("--ip", required=True, help="the drive's static IPv4 address")
    run.add_argument("--manufacturing", required=True, type=Path, help="manufacturing file with the CSN and PCkey")
    run.add_argument("--csn", type=cli_type(parse_csn), help="which drive of the file (16 hex digits); optional if it holds one")
    _common(run)
    run.set_defaults(func=_run_one)

    many = dsub.add_parser("run-many", help="run every drive of a manufacturing file in one process")
    many.add_argument("--manufacturing", required=True, type=Path)
    many.add_argument("--first-ip", required=True, type=ipaddress.IPv4Address,
                      help="the first drive's address; the others follow consecutively")
    _common(many)
    many.set_defaults(func=_run_many)

    make = dsub.add_parser("manufacture", help="write a manufacturing file (CSNs and random PCkeys)")
    make.add_argument("--count", type=int, required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--first-csn", type=cli_type(parse_csn), help="CSN of the first drive (16 hex digits)")
    make.add_argument("--model", default="T10000A", choices=["T10000A", "T10000B", "T10000A-2G"])
    make.set_defaults(func=_manufacture)

    vop = sub.add_parser("vop", help="the Virtual Operator Panel of one drive")
    vsub = vop.add_subparsers(dest="vop_command", required=True)
    status = vsub.add_parser("status", help="show the drive's encryption status fields")
    status.add_argument("ip", nargs="?", help="the drive's IP (or --ip)")
    status.add_argument("--ip", dest="ip_option")
    status.add_argument("--port", type=int, default=VOP_PORT)
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=_vop_status)
    reset = vsub.add_parser("reset", help="Reset Drive: clear its device and media keys")
    reset.add_argument("ip", nargs="?", help="the drive's IP (or --ip)")
    reset.add_argument("--ip", dest="ip_option")
    reset.add_argument("--port", type=int, default=VOP_PORT)
    reset.set_defaults(func=_vop_reset)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", required=True, type=Path, help="directory for the drives' non-volatile memory")
    p.add_argument("--listen-broadcast", default=LOOPBACK_BROADCAST,
                   help="address the LAN listener binds: the broadcast address, or 0.0.0.0")
    p.add_argument("--drive-lan-port", type=int, default=DRIVE_LAN_PORT,
                   help=f"UDP port of the drive LAN (default {DRIVE_LAN_PORT}); the tokens' --drive-lan-port")
    p.add_argument("--library", type=Path, help="directory of cartridges the drives load (default STATE/library)")
    p.add_argument("--capture", type=Path, help="write everything sent and received to this pcap (no root needed)")
    p.add_argument("--mqtt", help="publish state and alerts to this broker, mqtt://HOST[:PORT] (docs/EVENTS.md)")
    p.add_argument("--site", default="lab", help="the site name in MQTT topics")
    p.add_argument("--sense-profile", choices=[s.value for s in SenseProfile], default=SenseProfile.T10000.value,
                   help="sense codes: the T10000 firmware's (default) or standard SSC-3 (ASC 74h)")


def _serve(args: argparse.Namespace, drives: list) -> int:  # type: ignore[type-arg]
    config = DriveHostConfig(state_dir=args.state, listen_broadcast=args.listen_broadcast, library=args.library,
                             lan_port=args.drive_lan_port,
                             sense_profile=SenseProfile(args.sense_profile))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        from events import EventPublisher
        from protocol.pcap import CaptureWriter

        capture = CaptureWriter.optional(args.capture)
        publisher = EventPublisher.optional(args.mqtt)
        try:
            async with DriveHost(config, drives, tap=capture, events=publisher, site=args.site) as host:
                # SIGHUP is a power cycle of every hosted drive: media keys are lost.
                loop.add_signal_handler(signal.SIGHUP, lambda: [h.power_cycle() for h in host.drives.values()])
                print(f"{len(drives)} drive(s) serving, first at {drives[0][1]}", flush=True)
                await stop.wait()
                await host.flush()
        finally:
            if capture is not None:
                capture.close()
            if publisher is not None:
                await publisher.stop()

    asyncio.run(main())
    return 0


def _run_one(args: argparse.Namespace) -> int:
    made = find_drive(read_manufacturing_file(args.manufacturing), args.csn, args.manufacturing)
    return _serve(args, [(made, args.ip)])


def _run_many(args: argparse.Namespace) -> int:
    made = read_manufacturing_file(args.manufacturing)
    if not made:
        raise ValueError(f"{args.manufacturing} lists no drives")
    return _serve(args, [(m, str(args.first_ip + i)) for i, m in enumerate(made)])


def _manufacture(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ValueError("--count must be at least 1")
    kwargs = {"first_serial": int.from_bytes(args.first_csn, "big")} if args.first_csn else {}
    drives = make_drives(args.count, model=args.model, **kwargs)
    write_manufacturing_file(args.out, drives)
    print(f"wrote {len(drives)} drive(s) to {args.out}: CSN {drives[0].csn.hex()} .. {drives[-1].csn.hex()}")
    return 0


def _drive_ip(args: argparse.Namespace) -> str:
    ip = args.ip or args.ip_option
    if not ip:
        raise ValueError("give the drive's IP: t10k vop status IP")
    return str(ip)


def _vop_status(args: argparse.Namespace) -> int:
    fields = vop_fields(asyncio.run(vop_status(_drive_ip(args), port=args.port)))
    if args.json:
        print(json.dumps(fields, indent=2))
    else:
        width = max(len(k) for k in fields)
        for k, v in fields.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _vop_reset(args: argparse.Namespace) -> int:
    result = asyncio.run(vop_reset(_drive_ip(args), port=args.port))
    print(result.message)
    return 0 if result.status == 0 else 1
