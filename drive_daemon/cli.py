"""``t10k drive ...`` and ``t10k vop ...``: run drives, make manufacturing files, ask a drive's VOP."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import signal
from pathlib import Path

from protocol.cli_options import add_broadcast, add_capture, add_ip, add_json, add_mqtt
from protocol.constants import DRIVE_LAN_PORT, VOP_PORT
from protocol.ids import cli_type, parse_csn

from protocol.sense import SenseProfile

from .credential import read_credential_file, write_credential_file
from .sockets import SocketMode
from .manufacturing import find_drive, make_drives, read_manufacturing_file, write_manufacturing_file
from .vop import vop_fields, vop_load, vop_reset, vop_status, vop_unload


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    drive = sub.add_parser("drive", help="run emulated T10000 drives")
    dsub = drive.add_subparsers(dest="drive_command", required=True)

    run = dsub.add_parser("run", help="run one drive at its static IP until SIGINT/SIGTERM")
    add_ip(run, "the drive")
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

    cred = dsub.add_parser("make-credential", help="write a new service credential file (mode 0600) for a drive host")
    cred.add_argument("--out", required=True, type=Path)
    cred.add_argument("--force", action="store_true", help="replace --out if it exists (the old credential stops working)")
    add_json(cred)
    cred.set_defaults(func=_make_credential)

    forget = dsub.add_parser("forget-nvram", help="remove one drive's NVRAM from its host's state directory: the "
                             "drive starts as from the factory (stop its host first)")
    forget.add_argument("--state", required=True, type=Path, help="the drive host's --state directory")
    forget.add_argument("--csn", required=True, type=cli_type(parse_csn), help="the drive (16 hex digits)")
    add_json(forget)
    forget.set_defaults(func=_forget_nvram)

    make = dsub.add_parser("manufacture", help="write a manufacturing file (CSNs and random PCkeys)")
    make.add_argument("--count", type=int, required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--first-csn", type=cli_type(parse_csn), help="CSN of the first drive (16 hex digits)")
    make.add_argument("--model", default="T10000A", choices=["T10000A", "T10000B", "T10000A-2G"])
    add_json(make)
    make.add_argument("--force", action="store_true", help="overwrite --out (and the PCkeys in it) if it exists")
    make.set_defaults(func=_manufacture)

    vop = sub.add_parser("vop", help="the Virtual Operator Panel of one drive")
    vsub = vop.add_subparsers(dest="vop_command", required=True)
    status = vsub.add_parser("status", help="show the drive's encryption status fields")
    add_ip(status, "the drive", positional=True)
    status.add_argument("--port", type=int, default=VOP_PORT)
    add_json(status)
    status.set_defaults(func=_vop_status)
    reset = vsub.add_parser("reset", help="Reset Drive: clear its device and media keys (needs the service credential)")
    add_ip(reset, "the drive", positional=True)
    reset.add_argument("--port", type=int, default=VOP_PORT)
    reset.add_argument("--credential-file", required=True, type=Path,
                       help="the drive host's service credential (its --service-credential-file)")
    add_json(reset)
    reset.set_defaults(func=_vop_reset)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state", required=True, type=Path, help="directory for the drives' non-volatile memory")
    add_broadcast(p, "the drive LAN's broadcast address, which the LAN listener binds (or 0.0.0.0)",
                  old_names=("--listen-broadcast",))
    p.add_argument("--drive-lan-port", type=int, default=DRIVE_LAN_PORT,
                   help=f"UDP port of the drive LAN (default {DRIVE_LAN_PORT}); the tokens' --drive-lan-port")
    p.add_argument("--library", type=Path, help="directory of cartridges the drives load (default STATE/library)")
    p.add_argument("--service-credential-file", type=Path,
                   help="the host's service credential (64 hex digits, 't10k drive make-credential'): "
                        "VOP Reset Drive needs it; without one, VOP resets are refused")
    add_capture(p)
    add_mqtt(p)
    p.add_argument("--sense-profile", choices=[s.value for s in SenseProfile], default=SenseProfile.T10000.value,
                   help="sense codes: the T10000 firmware's (default) or standard SSC-3 (ASC 74h)")
    p.add_argument("--sockets", choices=[m.value for m in SocketMode], default=SocketMode.AUTO.value,
                   help="per-drive: each drive binds its UDP socket, VOP and iSCSI listeners at its address "
                        "(3 file descriptors a drive; other processes may use the same ports on other addresses); "
                        "shared: one UDP socket and two listeners on 0.0.0.0 for every drive, each drive still "
                        "answering from its own address (the host must own those ports in its network namespace); "
                        "auto (default): per-drive while 3 descriptors a drive fit under half the open-file "
                        "limit, shared beyond")
    add_json(p, "print one JSON line when serving and one when stopped (instead of text)")


def _serve(args: argparse.Namespace, drives: list) -> int:  # type: ignore[type-arg]
    from netcheck.heap import settle_heap

    from .service import DriveHost, DriveHostConfig  # here: every other t10k command starts without it

    config = DriveHostConfig(state_dir=args.state, listen_broadcast=args.broadcast, library=args.library,
                             lan_port=args.drive_lan_port, sockets=SocketMode(args.sockets),
                             sense_profile=SenseProfile(args.sense_profile),
                             service_credential=(read_credential_file(args.service_credential_file)
                                                 if args.service_credential_file else None))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        from events import EventPublisher
        from protocol.pcap import CaptureWriter

        capture = CaptureWriter.optional(args.capture)
        name = f"drive-{drives[0][1]}" if len(drives) == 1 else f"drives-{drives[0][1]}"
        publisher = EventPublisher.optional(args.mqtt, site=args.site, daemon=name)
        try:
            async with DriveHost(config, drives, tap=capture, events=publisher, site=args.site) as host:
                # SIGHUP is a power cycle of every hosted drive: media keys are lost.
                loop.add_signal_handler(signal.SIGHUP, lambda: [h.power_cycle() for h in host.drives.values()])
                settle_heap()
                if args.json:
                    print(json.dumps({"status": "serving", "drives": [{"csn": m.csn.hex(), "ip": ip} for m, ip in drives],
                                      "state": str(args.state), "broadcast": args.broadcast,
                                      "sockets": host.socket_mode.value}), flush=True)
                else:
                    print(f"{len(drives)} drive(s) serving, first at {drives[0][1]} ({host.socket_mode.value} sockets)",
                          flush=True)
                await stop.wait()
                await host.flush()
        finally:
            if capture is not None:
                capture.close()
            if publisher is not None:
                await publisher.stop()
        if args.json:
            c = host.counters
            print(json.dumps({"status": "stopped", "drives": len(drives), "datagrams_in": c.datagrams_in,
                              "datagrams_out": c.datagrams_out, "decode_errors": dict(c.decode_errors),
                              "events": dict(c.events), "unrouted": dict(c.unrouted),
                              "send_dropped": c.send_dropped}), flush=True)

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
    write_manufacturing_file(args.out, drives, force=args.force)
    if args.json:
        print(json.dumps({"file": str(args.out), "model": args.model,
                          "drives": [{"csn": d.csn.hex(), "model": d.model} for d in drives]}, indent=2))
    else:
        print(f"wrote {len(drives)} drive(s) to {args.out}: CSN {drives[0].csn.hex()} .. {drives[-1].csn.hex()}")
    return 0


def _forget_nvram(args: argparse.Namespace) -> int:
    from .persist import forget_nvram

    removed = forget_nvram(args.state, args.csn)
    if args.json:
        print(json.dumps({"csn": args.csn.hex(), "state": str(args.state), "removed": removed}, indent=2))
    elif removed:
        print(f"drive {args.csn.hex()}: removed {' and '.join(removed)}; it starts as from the factory and needs an "
              f"EKT with 'use PCkey'")
    else:
        print(f"drive {args.csn.hex()}: {args.state} holds no NVRAM for it (it already starts as from the factory)")
    return 0


def _vop_status(args: argparse.Namespace) -> int:
    fields = vop_fields(asyncio.run(vop_status(args.ip, port=args.port)))
    if args.json:
        print(json.dumps(fields, indent=2))
    else:
        width = max(len(k) for k in fields)
        for k, v in fields.items():
            print(f"{k:<{width}}  {v}")
    return 0


def _make_credential(args: argparse.Namespace) -> int:
    write_credential_file(args.out, force=args.force)
    if args.json:
        print(json.dumps({"credential_file": str(args.out), "mode": "0600"}, indent=2))
        return 0
    print(f"wrote a service credential to {args.out} (mode 0600): give it to the drive host "
          f"(--service-credential-file) and to whoever may reset its drives (t10k vop reset --credential-file)")
    return 0


def _vop_reset(args: argparse.Namespace) -> int:
    result = asyncio.run(vop_reset(args.ip, read_credential_file(args.credential_file), port=args.port))
    print(json.dumps({"drive": args.ip, "status": result.status.name, "message": result.message})
          if args.json else result.message)
    return 0 if result.status == 0 else 1


def register_tape_loading(tsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``t10k tape load --ip IP VOLSER`` and ``t10k tape unload --ip IP``: the operator at the
    drive's VOP, until a medium changer exists."""
    p = tsub.add_parser("load", help="load a cartridge of the drive's library into the drive (the operator, by VOP)")
    add_ip(p, "the drive")
    p.add_argument("--port", type=int, default=VOP_PORT)
    add_json(p)
    p.add_argument("volser", help="the cartridge's volume serial")
    p.set_defaults(func=_tape_load)
    p = tsub.add_parser("unload", help="unload the drive's cartridge and take it out (the operator, by VOP)")
    add_ip(p, "the drive")
    p.add_argument("--port", type=int, default=VOP_PORT)
    add_json(p)
    p.set_defaults(func=_tape_unload)


def _tape_load(args: argparse.Namespace) -> int:
    return _vop_result(args, asyncio.run(vop_load(args.ip, args.volser, port=args.port)))


def _tape_unload(args: argparse.Namespace) -> int:
    return _vop_result(args, asyncio.run(vop_unload(args.ip, port=args.port)))


def _vop_result(args: argparse.Namespace, result) -> int:  # type: ignore[no-untyped-def]
    ok = result.status == 0
    if args.json:
        print(json.dumps({"ok": ok, "status": result.status.name, "message": result.message}, indent=2))
    else:
        print(result.message)
    return 0 if ok else 1
