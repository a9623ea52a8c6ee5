"""``t10k token ...``: run a token daemon at its static IP; air-gap images."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from pathlib import Path

from protocol.cli_options import add_broadcast, add_capture, add_ip, add_json, add_mqtt
from protocol.constants import ANNOUNCE_INTERVAL_S, DRIVE_LAN_PORT, TOKEN_LAN_PORT, TOKEN_MGMT_PORT

from .service import TokenConfig, TokenService, read_secret_file


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    token = sub.add_parser("token", help="run a key token (EKT/OKT) daemon")
    tsub = token.add_subparsers(dest="token_command", required=True)
    run = tsub.add_parser("run", help="run one token at its static IP until SIGINT/SIGTERM")
    add_ip(run, "the token")
    run.add_argument("--state", required=True, type=Path, help="directory for the token's non-volatile memory")
    run.add_argument("--secret-file", required=True, type=Path, help="token secret from 't10k kms add-token'")
    add_broadcast(run, "the drive LAN's broadcast address, where KEYS_AVAILABLE goes")
    run.add_argument("--announce-interval", type=float, default=ANNOUNCE_INTERVAL_S, metavar="SECONDS")
    run.add_argument("--lan-port", type=int, default=TOKEN_LAN_PORT)
    run.add_argument("--mgmt-port", type=int, default=TOKEN_MGMT_PORT)
    run.add_argument("--drive-lan-port", type=int, default=DRIVE_LAN_PORT,
                     help=f"UDP port the drives hear the LAN on (default {DRIVE_LAN_PORT}); one per lab on a machine")
    add_capture(run)
    add_mqtt(run)
    add_json(run, "print one JSON line when serving and one when stopped (instead of text)")
    run.set_defaults(func=_run)
    for name, func, help in (("load-image", _load_image, "air gap: write a token from an image made at the KMS"),
                             ("save-image", _save_image, "air gap: save the token's status for the KMS to read")):
        p = tsub.add_parser(name, help=help)
        p.add_argument("image", type=Path)
        p.add_argument("--state", required=True, type=Path, help="the token's non-volatile memory")
        p.add_argument("--secret-file", required=True, type=Path)
        add_json(p)
        if name == "save-image":
            p.add_argument("--force", action="store_true", help="overwrite the image file if it exists")
        p.set_defaults(func=func)
    return tsub


def _run(args: argparse.Namespace) -> int:
    if args.announce_interval <= 0:
        raise ValueError("--announce-interval must be positive")
    config = TokenConfig(
        ip=args.ip, state_dir=args.state, secret=read_secret_file(args.secret_file), broadcast=args.broadcast,
        lan_port=args.lan_port, mgmt_port=args.mgmt_port, announce_interval_s=args.announce_interval,
        drive_lan_port=args.drive_lan_port,
    )

    async def main() -> None:
        from events import EventPublisher
        from protocol.pcap import CaptureWriter

        capture = CaptureWriter.optional(args.capture)
        publisher = EventPublisher.optional(args.mqtt, site=args.site, daemon=f"token-{args.ip}")
        service = TokenService(config, tap=capture, events=publisher, site=args.site)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        # SIGUSR1 is the reset button held for 3 s; SIGUSR2 re-inserts the token with reset held.
        loop.add_signal_handler(signal.SIGUSR1, lambda: asyncio.ensure_future(service.press_reset()))
        loop.add_signal_handler(signal.SIGUSR2, lambda: asyncio.ensure_future(service.wipe()))
        try:
            async with service:
                if args.json:
                    print(json.dumps({"status": "serving", "token": args.ip, "state": str(args.state),
                                      "broadcast": args.broadcast, "mgmt_port": args.mgmt_port}), flush=True)
                else:
                    print(f"token {args.ip}: serving (state in {args.state})", flush=True)
                await stop.wait()
        finally:
            if capture is not None:
                capture.close()
            if publisher is not None:
                await publisher.stop()
        if args.json:
            c = service.counters
            print(json.dumps({"status": "stopped", "token": args.ip, "datagrams_in": c.datagrams_in,
                              "datagrams_out": c.datagrams_out, "decode_errors": dict(c.decode_errors),
                              "events": dict(c.events)}), flush=True)

    asyncio.run(main())
    return 0


def _load_image(args: argparse.Namespace) -> int:
    from protocol.timestamps import now_us

    from .airgap import load_image

    result = load_image(args.state, read_secret_file(args.secret_file), args.image, now_us())
    print(json.dumps({"image": str(args.image), "status": result.status.name, "message": result.message})
          if args.json else result.message)
    return 0


def _save_image(args: argparse.Namespace) -> int:
    from .airgap import save_image

    save_image(args.state, read_secret_file(args.secret_file), args.image, force=args.force)
    print(json.dumps({"image": str(args.image), "saved": True}) if args.json else f"token status saved to {args.image}")
    return 0
