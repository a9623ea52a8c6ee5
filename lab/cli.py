"""The ``t10k`` command: one entry point composing each part's subcommands."""

from __future__ import annotations

import argparse
import logging
import sys

from drive_daemon import cli as drive_cli
from drive_daemon import host_cli
from drive_daemon.errors import DriveDaemonError
from kms_client import cli as kms_cli
from kms_client.errors import KmsError
from token_daemon import cli as token_cli
from token_daemon.errors import TokenDaemonError

from . import demo_cli, pcap_cli
from .netlab import NetLabError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="t10k", description="t10k-lab: an emulator of the StorageTek T10000 tape-encryption system"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    token_cli.register(sub)
    drive_cli.register(sub)
    host_cli.register(sub)
    kms_cli.register(sub)
    demo_cli.register(sub)
    pcap_cli.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or EXIT_OK)
    except (KmsError, DriveDaemonError, TokenDaemonError, NetLabError, ValueError) as exc:  # CaptureError, TopologyError are ValueErrors
        print(f"t10k: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"t10k: error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
