"""``t10k host ...``: a backup application against a drive, over iSCSI.

The operator loads the cartridge (``t10k tape load --ip IP VOLSER``); these commands then
use the drive as any host does: SCSI commands to its iSCSI target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from protocol.constants import ISCSI_PORT
from protocol.cli_options import add_ip, add_json

from .limits import DEFAULT_BLOCK_SIZE, MAX_TRANSFER

if TYPE_CHECKING:  # the session, the tape client and the backup format load when a command runs
    from .backup import TapeFile
    from .tape import TapeDrive


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    host = sub.add_parser("host", help="use a drive over iSCSI, as a backup application does")
    hsub = host.add_subparsers(dest="host_command", required=True)

    def cmd(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = hsub.add_parser(name, help=help)
        add_ip(p, "the drive", purpose="its iSCSI portal")
        p.add_argument("--port", type=int, default=ISCSI_PORT, help=f"the iSCSI port (default {ISCSI_PORT})")
        p.add_argument("--target", help="the target's IQN (default: the one the portal lists)")
        p.add_argument("--lun", type=int, default=0, help="the tape's LUN (default 0)")
        p.add_argument("--chap-user", help="CHAP user name, if the target asks for CHAP")
        p.add_argument("--chap-secret-file", type=Path, help="file holding the CHAP secret")
        add_json(p)
        p.set_defaults(func=func)
        return p

    cmd("status", _status, "identity, position, block size and encryption status")
    cmd("rewind", _rewind, "rewind to BOT")
    cmd("unload", _unload, "rewind and unload the cartridge (LOAD UNLOAD)")
    for name, func, help in (("backup", _backup, "write files as tape files"),
                             ("list", _list, "list the tape files"),
                             ("restore", _restore, "read tape files back to disk"),
                             ("verify", _verify, "read every tape file and check its checksum")):
        p = cmd(name, func, help)
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when it is a terminal)")
        if name == "backup":
            p.add_argument("files", nargs="+", type=Path)
            p.add_argument("--append", action="store_true", help="append after the last file, not from BOT")
            p.add_argument("--block-size", type=_block_size, default=DEFAULT_BLOCK_SIZE,
                           help=f"octets per block (default {DEFAULT_BLOCK_SIZE}, at most {MAX_TRANSFER})")
        if name == "restore":
            p.add_argument("--file", type=int, action="append", help="tape file number (repeat; default all)")
            p.add_argument("--out", type=Path, required=True, help="directory to restore into")
        if name == "verify":
            p.add_argument("sources", nargs="*", type=Path, help="compare with these local files too")


def _block_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of octets") from None
    if not 1 <= value <= MAX_TRANSFER:
        raise argparse.ArgumentTypeError(f"a block is 1..{MAX_TRANSFER} octets")
    return value


def _chap(args: argparse.Namespace) -> tuple[str, str] | None:
    if args.chap_user is None and args.chap_secret_file is None:
        return None
    if args.chap_user is None or args.chap_secret_file is None:
        print("t10k host: error: CHAP needs both --chap-user and --chap-secret-file", file=sys.stderr)
        raise SystemExit(2)
    return args.chap_user, args.chap_secret_file.read_text().strip()


def _run(args: argparse.Namespace, body: Callable[[TapeDrive], Awaitable[Any]]) -> Any:
    from .session import open_tape

    async def main() -> Any:
        async with open_tape(args.ip, port=args.port, target=args.target, lun=args.lun, chap=_chap(args)) as tape:
            return await body(tape)
    return asyncio.run(main())


def _print(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _status(args: argparse.Namespace) -> int:
    data = _run(args, lambda t: t.status())
    return _print(args, data, "\n".join(f"{k:<20} {v}" for k, v in data.items()))


def _rewind(args: argparse.Namespace) -> int:
    async def body(t: TapeDrive) -> None:
        await t.ready()
        await t.rewind()
    _run(args, body)
    return _print(args, {"rewound": True}, "rewound")


def _unload(args: argparse.Namespace) -> int:
    async def body(t: TapeDrive) -> None:
        await t.ready()
        await t.unload()
    _run(args, body)
    return _print(args, {"unloaded": True}, "unloaded")


def _backup(args: argparse.Namespace) -> int:
    from . import backup as bk

    files = _run(args, lambda t: bk.backup(t, args.files, block_size=args.block_size, append=args.append,
                                           progress=args.progress))
    return _print(args, [f.to_json() for f in files],
                  "\n".join(f"file {f.index}: {f.name} ({f.size} octets)" for f in files))


def _list(args: argparse.Namespace) -> int:
    from . import backup as bk

    files = _run(args, bk.list_files)
    return _print(args, [f.to_json() for f in files],
                  "\n".join(f"{f.index:>4}  {f.size:>12}  {f.sha256[:16]}  {f.name}" for f in files) or "(no files)")


def _restore(args: argparse.Namespace) -> int:
    from . import backup as bk

    args.out.mkdir(parents=True, exist_ok=True)

    async def body(t: TapeDrive) -> list[TapeFile]:
        indexes = args.file if args.file else [f.index for f in await bk.list_files(t)]
        return [await bk.restore(t, i, args.out, progress=args.progress) for i in indexes]
    files = _run(args, body)
    return _print(args, [f.to_json() for f in files],
                  "\n".join(f"file {f.index}: {args.out / f.name}" for f in files))


def _verify(args: argparse.Namespace) -> int:
    from . import backup as bk

    results = _run(args, lambda t: bk.verify(t, {p.name: p for p in args.sources}))
    _print(args, results, "\n".join(f"{'OK ' if r['ok'] else 'BAD'} file {r['file']}: {r['name']}" for r in results)
           or "(no files)")
    return 0 if results and all(r["ok"] for r in results) else 1
