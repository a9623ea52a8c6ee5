"""The ``t10k`` command: one entry point composing each part's subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from drive_daemon.errors import DriveDaemonError
from host.errors import HostError
from kms_client.errors import KmsError
from token_daemon.errors import TokenDaemonError

from protocol.cli_options import add_ip, add_json, finish
from protocol.constants import TOKEN_MGMT_PORT

from .errors import NetLabError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Every command's parser; with ``command="pcap"`` only that one's, so ``t10k pcap decode``
    does not import the daemons, the KMS and the console first (0.4 s of a capture's decode)."""
    from . import pcap_cli

    parser = argparse.ArgumentParser(
        prog="t10k", description="t10k-lab: an emulator of the StorageTek T10000 tape-encryption system"
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True)
    if command == "pcap":
        pcap_cli.register(sub)
        return parser
    from drive_daemon import cli as drive_cli
    from drive_daemon import tape_cli
    from host import cli as host_cli
    from kms_client import cli as kms_cli
    from kms_console import cli as console_cli
    from token_daemon import cli as token_cli

    from . import demo_cli

    _token_status(token_cli.register(sub))
    drive_cli.register(sub)
    host_cli.register(sub)
    tape_cli.register(sub)
    console_cli.register(kms_cli.register(sub))
    demo_cli.register(sub)
    pcap_cli.register(sub)
    return parser


def _token_status(tsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``t10k token status IP``: a token's LEDs, contents and errors, over its authenticated channel."""
    p = tsub.add_parser("status", help="read a token's status with its secret (as the KMS does)")
    add_ip(p, "the token", positional=True)
    p.add_argument("--secret-file", required=True, type=Path, help="the token's secret (from 't10k kms add-token')")
    p.add_argument("--port", type=int, default=TOKEN_MGMT_PORT)
    add_json(p)
    p.set_defaults(func=_run_token_status)


def _run_token_status(args: argparse.Namespace) -> int:
    import asyncio
    import json

    import itertools

    from kms_client.push import request_resyncing
    from protocol import ReadStatus, TokenStatus
    from protocol.timestamps import format_timestamp, now_us
    from token_daemon.service import read_secret_file

    counters = itertools.count(now_us())  # a token that lost its counter is resynchronised first
    reply = asyncio.run(request_resyncing(args.ip, ReadStatus(), secret=read_secret_file(args.secret_file),
                                          next_counter=lambda: next(counters), port=args.port))
    assert isinstance(reply, TokenStatus)
    data = {"mode": reply.mode.name, "led3": reply.led3.name, "error_led": reply.error_led.name,
            "pool": reply.pool, "timestamp": format_timestamp(reply.timestamp), "csns": reply.csn_count,
            "packages_held": reply.packages_held, "acknowledged": reply.acknowledged,
            "errors": [{"csn": e.csn.hex(), "error_code": f"{int(e.error_code):08X}", "key_id": e.key_id.hex()}
                       for e in reply.errors]}
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(f"{k:<14} {v}" for k, v in data.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Exit 0 on success, 1 with one line on standard error when something fails, 2 for bad arguments."""
    try:  # the parser imports the command's part: a Ctrl-C while it loads is no bug either
        parser = build_parser(_command(sys.argv[1:] if argv is None else argv))
        args = finish(parser.parse_args(argv))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    level = logging.WARNING if args.verbose == 0 else logging.INFO if args.verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        code = int(args.func(args) or EXIT_OK)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except BrokenPipeError as exc:
        if not _stdout_closed():
            return _fail(f"{exc.strerror or exc}")
        return _reader_went_away()
    except (KmsError, DriveDaemonError, TokenDaemonError, HostError, NetLabError, ValueError) as exc:  # CaptureError, TopologyError are ValueErrors
        return _fail(str(exc))
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: still one line, unless asked for the traceback
        if args.verbose >= 2:
            raise
        return _fail(f"unexpected {type(exc).__name__}: {exc} (a bug: -vv shows the traceback)")


EXIT_INTERRUPTED, EXIT_PIPE = 130, 141  # as a shell reports SIGINT and SIGPIPE


def _command(argv: list[str]) -> str | None:
    """The command word, when only ``-v`` options come before it (``-h`` first: None, all of them)."""
    for word in argv:
        if word == "--verbose" or (word.startswith("-v") and word.strip("v") == "-"):
            continue
        return None if word.startswith("-") else word
    return None


def _fail(message: str) -> int:
    try:
        print(f"t10k: error: {message}", file=sys.stderr)
    except (BrokenPipeError, ValueError):
        pass
    return EXIT_FAILED


def _stdout_closed() -> bool:
    """True when nobody reads our standard output any more (``t10k pcap decode X | head``)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(event & select.POLLERR for _, event in poller.poll(0))
    except (OSError, ValueError):
        return False


def _reader_went_away() -> int:
    """Stop quietly, as command-line tools do when the reader of their output exits: no
    traceback, no message; standard output goes to /dev/null so the exit flush cannot fail."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return EXIT_PIPE


if __name__ == "__main__":
    sys.exit(main())
