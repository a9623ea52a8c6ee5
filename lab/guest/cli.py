"""``t10k lab guest``: a Linux guest (QEMU TCG) whose /dev/nst0 is a drive's iSCSI tape LUN."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path
from protocol.cli_options import add_ip, add_json

from .errors import GuestError

EXIT_TIMEOUT = 124  # as timeout(1): the script did not finish in time
_ESCAPES = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|[A-Za-z])")


def register(lsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = lsub.add_parser(
        "guest", help="boot a Linux guest (QEMU, TCG) with a drive's iSCSI LUN as /dev/nst0; run a script or a shell",
        description="Boot a Debian kernel with the st and sg drivers in QEMU (TCG, no network card); QEMU logs in "
                    "to the drive's iSCSI target and the tape appears as /dev/nst0 (and /dev/sg0). GNU tar, mt "
                    "(mt-st), stenc, sg3-utils, lsscsi and Bacula's btape are in the guest.")
    add_ip(p, "the drive", required=False, help="the drive's address (its iSCSI portal); without it the guest has no tape")
    p.add_argument("--port", type=int, default=3260, help="the iSCSI port (default 3260)")
    p.add_argument("--target", help="the target name (IQN); default: the one target the portal announces")
    p.add_argument("--lun", type=int, default=0, help="the tape's LUN (default 0)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--run", type=Path, metavar="FILE", help="run this shell script in the guest (bash)")
    what.add_argument("--command", metavar="CMD", help="run this shell command line in the guest")
    what.add_argument("--build", action="store_true", help="only build (or find) the cached guest image and say "
                                                           "where it is")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds before the guest is stopped (default 300 for a script, 3600 for a shell)")
    p.add_argument("--memory", type=int, default=384, metavar="MB", help="guest memory (default 384)")
    add_json(p)
    p.set_defaults(func=_guest)


def _guest(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except GuestError as exc:
        print(f"t10k: error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    from .build import ensure_image
    from .runner import Lun, discover, run_script, run_shell

    started = time.monotonic()
    image = ensure_image(log=lambda m: print(f"t10k lab guest: {m}", file=sys.stderr, flush=True))
    if args.build:
        print(f"{image.directory}\nkernel {image.kernel_version}, initramfs {image.initrd.stat().st_size:,} bytes, "
              f"ready in {time.monotonic() - started:.1f} s")
        return 0
    lun = None
    if args.ip:
        target = args.target
        if target is None:
            targets = discover(args.ip, args.port)
            if len(targets) != 1:
                raise GuestError(f"{args.ip} offers {len(targets)} targets ({', '.join(targets)}): pass --target")
            target = targets[0]
        lun = Lun(args.ip, target, args.port, args.lun)
    if args.run is None and args.command is None:
        return run_shell(lun=lun, timeout=args.timeout or 3600, image=image, memory_mb=args.memory)
    script = args.run.read_text() if args.run is not None else args.command + "\n"
    echo = None if args.json else (lambda line: print(_ESCAPES.sub("", line), flush=True))
    result = run_script(script, lun=lun, timeout=args.timeout or 300, image=image, memory_mb=args.memory, echo=echo)
    if args.json:
        print(json.dumps({"status": result.status, "output": result.output, "seconds": round(result.seconds, 2),
                          "tape": result.tape, "target": lun.url if lun else None}, indent=2))
    if lun is not None and not result.tape:
        print(f"t10k lab guest: no /dev/nst0 appeared for {lun.url}", file=sys.stderr)
    if result.status is None:
        print(f"t10k lab guest: the script did not finish in {args.timeout or 300:.0f} s; the guest was stopped",
              file=sys.stderr)
        return EXIT_TIMEOUT
    print(f"t10k lab guest: exit status {result.status} in {result.seconds:.1f} s", file=sys.stderr)
    return result.status
