"""``t10k token ...``: run a token daemon at its static IP."""

from __future__ import annotations

import argparse
import asyncio
import signal
from pathlib import Path

from protocol.constants import ANNOUNCE_INTERVAL_S, DRIVE_LAN_PORT, LOOPBACK_BROADCAST, TOKEN_LAN_PORT, TOKEN_MGMT_PORT

from .service import TokenConfig, TokenService, read_secret_file


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    token = sub.add_parser("token", help="run a key token (EKT/OKT) daemon")
    tsub = token.add_subparsers(dest="token_command", required=True)
    run = tsub.add_parser("run", help="run one token at its static IP until SIGINT/SIGTERM")
    run.add_argument("--ip", required=True, help="the token's static IPv4 address (e.g. 127.0.0.21)")
    run.add_argument("--state", required=True, type=Path, help="directory for the token's non-volatile memory")
    run.add_argument("--secret-file", required=True, type=Path, help="token secret from 't10k kms add-token'")
    run.add_argument("--broadcast", default=LOOPBACK_BROADCAST, help="drive LAN broadcast address")
    run.add_argument("--announce-interval", type=float, default=ANNOUNCE_INTERVAL_S, metavar="SECONDS")
    run.add_argument("--lan-port", type=int, default=TOKEN_LAN_PORT)
    run.add_argument("--mgmt-port", type=int, default=TOKEN_MGMT_PORT)
    run.add_argument("--drive-lan-port", type=int, default=DRIVE_LAN_PORT,
                     help=f"UDP port the drives hear the LAN on (default {DRIVE_LAN_PORT}); one per lab on a machine")
    run.add_argument("--capture", type=Path, help="write everything sent and received to this pcap (no root needed)")
    run.add_argument("--mqtt", help="publish state and alerts to this broker, mqtt://HOST[:PORT] (docs/EVENTS.md)")
    run.add_argument("--site", default="lab", help="the site name in MQTT topics")
    run.set_defaults(func=_run)
    for name, func, help in (("load-image", _load_image, "air gap: write a token from an image made at the KMS"),
                             ("save-image", _save_image, "air gap: save the token's status for the KMS to read")):
        p = tsub.add_parser(name, help=help)
        p.add_argument("image", type=Path)
        p.add_argument("--state", required=True, type=Path, help="the token's non-volatile memory")
        p.add_argument("--secret-file", required=True, type=Path)
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
        publisher = EventPublisher.optional(args.mqtt)
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
                print(f"token {args.ip}: serving (state in {args.state})", flush=True)
                await stop.wait()
        finally:
            if capture is not None:
                capture.close()
            if publisher is not None:
                await publisher.stop()

    asyncio.run(main())
    return 0


def _load_image(args: argparse.Namespace) -> int:
    from protocol.timestamps import now_us

    from .airgap import load_image

    result = load_image(args.state, read_secret_file(args.secret_file), args.image, now_us())
    print(result.message)
    return 0


def _save_image(args: argparse.Namespace) -> int:
    from .airgap import save_image

    save_image(args.state, read_secret_file(args.secret_file), args.image)
    print(f"token status saved to {args.image}")
    return 0


def _publisher(url: str | None):  # type: ignore[no-untyped-def]
    if url is None:
        return None
    from events import EventPublisher

    publisher = EventPublisher(url)
    publisher.start()
    return publisher
