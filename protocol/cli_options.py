"""Command-line options that mean the same thing everywhere, defined once (STYLE.md).

Every ``t10k`` command takes ``--json``; a daemon's address is ``--ip IP``; the drive LAN's
broadcast address is ``--broadcast ADDR``; a broker is ``--mqtt URL`` with ``--site NAME``;
a pcap to write is ``--capture FILE``. The parts' CLIs (token_daemon, drive_daemon,
kms_client, lab) add them through these functions so that a name, its metavar and its
meaning cannot drift apart; tests/test_cli.py walks the parser and checks it.

Output rules: the result goes to standard output (JSON with ``--json``); progress, warnings
and errors go to standard error (:class:`Progress`), so ``--json`` output stays parseable.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import IO

from .constants import LOOPBACK_BROADCAST

#: The option strings defined here: tests/test_cli.py checks no command defines them itself.
SHARED = ("--json", "--ip", "--broadcast", "--mqtt", "--site", "--capture")
_MARK = "t10k_shared"

JSON_HELP = "print the result as JSON on standard output (progress and errors go to standard error)"


def _mark(action: argparse.Action, name: str) -> argparse.Action:
    setattr(action, _MARK, name)
    return action


def shared_name(action: argparse.Action) -> str | None:
    """Which shared option an action is, or None when a command defined it itself."""
    return getattr(action, _MARK, None)


def add_json(p: argparse.ArgumentParser, help: str = JSON_HELP) -> None:
    _mark(p.add_argument("--json", action="store_true", help=help), "--json")


def add_ip(p: argparse.ArgumentParser, what: str, *, required: bool = True, positional: bool = False,
           default: str | None = None, purpose: str = "", help: str | None = None) -> None:
    """``--ip IP``: the address of the daemon ``what`` ("the drive", "the token").

    ``positional`` also accepts the address as the first argument, as older releases did
    (hidden from the help; :func:`finish` merges it into ``args.ip``)."""
    help = help or f"{what}'s static IPv4 address" + (f" ({purpose})" if purpose else "")
    if positional:
        p.add_argument("_ip_positional", nargs="?", metavar="IP", help=argparse.SUPPRESS)
        p.set_defaults(_ip_required=required, _ip_parser=p, _ip_what=what)
        required = False
    _mark(p.add_argument("--ip", metavar="IP", required=required, default=default, help=help), "--ip")


def add_broadcast(p: argparse.ArgumentParser, help: str, *, default: str | None = LOOPBACK_BROADCAST,
                  old_names: tuple[str, ...] = ()) -> None:
    """``--broadcast ADDR``: the drive LAN's broadcast address. ``old_names`` stay accepted, unlisted."""
    suffix = f" (default {default})" if default else ""
    _mark(p.add_argument("--broadcast", metavar="ADDR", default=default, help=help + suffix), "--broadcast")
    for old in old_names:
        p.add_argument(old, dest="broadcast", metavar="ADDR", help=argparse.SUPPRESS)


def add_mqtt(p: argparse.ArgumentParser, help: str = "publish state and alerts to this broker",
             *, required: bool = False, site: bool = True) -> None:
    _mark(p.add_argument("--mqtt", metavar="URL", required=required,
                         help=f"{help}, mqtt://HOST[:PORT] (docs/EVENTS.md)"), "--mqtt")
    if site:
        _mark(p.add_argument("--site", metavar="NAME", default="lab", help="the site name in MQTT topics (default lab)"),
              "--site")


def add_capture(p: argparse.ArgumentParser, help: str = "write everything sent and received to this pcap "
                                                        "(no root needed)") -> None:
    _mark(p.add_argument("--capture", metavar="FILE", type=Path, help=help), "--capture")


def finish(args: argparse.Namespace) -> argparse.Namespace:
    """After parsing: merge a positional address into ``--ip`` (exit 2 when it is missing or ambiguous)."""
    if hasattr(args, "_ip_positional"):
        positional, parser, what = args._ip_positional, args._ip_parser, args._ip_what
        del args._ip_positional, args._ip_parser, args._ip_what
        if positional and args.ip and positional != args.ip:
            parser.error(f"two addresses given ({positional} and --ip {args.ip}): give one, with --ip")
        args.ip = args.ip or positional
        if args._ip_required and not args.ip:
            parser.error(f"{what}'s address is missing: give --ip IP")
        del args._ip_required
    return args


class Progress:
    """Progress of a long operation on standard error, never on standard output.

    On a terminal, one line rewritten in place (a counter); otherwise one line per step,
    so logs and CI keep the whole story. ``quiet`` turns it off."""

    def __init__(self, what: str, total: int | None = None, *, stream: IO[str] | None = None,
                 quiet: bool = False) -> None:
        self.what, self.total, self.count = what, total, 0
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = time.monotonic()
        self._pending = False

    def _counter(self) -> str:
        if self.total is None:
            return f"[{self.count}]"
        return f"[{self.count}/{self.total}]"

    def step(self, text: str, *, advance: bool = True) -> None:
        """One step: ``advance`` counts it (False: say what we wait for, same step)."""
        if advance:
            self.count += 1
        self._write(f"{self.what}: {self._counter()} {text}")

    def note(self, text: str) -> None:
        """A line that stays, even on a terminal."""
        self._write(f"{self.what}: {text}", keep=True)

    def done(self, text: str) -> None:
        self._write(f"{self.what}: {text} ({time.monotonic() - self.started:.1f} s)", keep=True)

    def _write(self, line: str, *, keep: bool = False) -> None:
        if self.quiet:
            return
        try:
            if self.tty:
                self.stream.write("\r\x1b[K" + line + ("\n" if keep else ""))
                self._pending = not keep
            else:
                self.stream.write(line + "\n")
            self.stream.flush()
        except (BrokenPipeError, ValueError):  # stderr gone: progress is not worth failing for
            self.quiet = True

    def close(self) -> None:
        if self._pending and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
            self._pending = False
