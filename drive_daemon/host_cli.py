"""``t10k host ...`` (a backup application against a drive) and ``t10k tape ...`` (the library)."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any, Awaitable, Callable

from protocol.constants import HOST_PORT, MAX_BLOCK_SIZE

from . import backup as bk
from .cli import register_tape_loading
from .cartridge import Cartridge, CartridgeError, RecordKind, list_library
from .host_client import HostClient


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    host = sub.add_parser("host", help="use a drive's host interface, as a backup application does")
    hsub = host.add_subparsers(dest="host_command", required=True)

    def cmd(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = hsub.add_parser(name, help=help)
        p.add_argument("--ip", required=True, help="the drive's static IP")
        p.add_argument("--port", type=int, default=HOST_PORT)
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=func)
        return p

    p = cmd("load", _load, "load a cartridge by volume serial")
    p.add_argument("volser")
    cmd("unload", _unload, "unload the cartridge (keys held meanwhile are committed now)")
    cmd("rewind", _rewind, "rewind to BOT")
    cmd("status", _status, "position and encryption status (device and next block)")
    for name, func, help in (("backup", _backup, "write files as tape files"),
                             ("list", _list, "list the tape files"),
                             ("restore", _restore, "read tape files back to disk"),
                             ("verify", _verify, "read every tape file and check it")):
        p = cmd(name, func, help)
        p.add_argument("--volume", help="load this volume first (and unload it after)")
        p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                       help="progress bar on stderr (default: when it is a terminal)")
        if name == "backup":
            p.add_argument("files", nargs="+", type=Path)
            p.add_argument("--append", action="store_true", help="append after the last file, not from BOT")
            p.add_argument("--block-size", type=int, default=bk.DEFAULT_BLOCK_SIZE,
                           help=f"octets per block (default 262144, at most {MAX_BLOCK_SIZE})")
        if name == "restore":
            p.add_argument("--file", type=int, action="append", help="tape file number (repeat; default all)")
            p.add_argument("--out", type=Path, required=True, help="directory to restore into")
        if name == "verify":
            p.add_argument("sources", nargs="*", type=Path, help="compare with these local files too")

    tape = sub.add_parser("tape", help="the cartridge library (a directory of VOLSER.tape files)")
    tsub = tape.add_subparsers(dest="tape_command", required=True)
    p = tsub.add_parser("new", help="create blank cartridges")
    p.add_argument("--library", type=Path, required=True)
    p.add_argument("volsers", nargs="+")
    p.set_defaults(func=_tape_new)
    p = tsub.add_parser("list", help="list cartridges: objects, encrypted blocks, key IDs used (no keys needed)")
    p.add_argument("--library", type=Path, required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_tape_list)
    register_tape_loading(tsub)


def _run(args: argparse.Namespace, body: Callable[[HostClient], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        async with HostClient(args.ip, port=args.port) as client:
            volume = getattr(args, "volume", None)
            if volume:
                await client.load(volume)
            try:
                return await body(client)
            finally:
                if volume:
                    await client.unload()
    return asyncio.run(main())


def _print(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _load(args: argparse.Namespace) -> int:
    _run(args, lambda c: c.load(args.volser))
    return _print(args, {"loaded": args.volser}, f"{args.volser} loaded")


def _unload(args: argparse.Namespace) -> int:
    _run(args, lambda c: c.unload())
    return _print(args, {"unloaded": True}, "unloaded")


def _rewind(args: argparse.Namespace) -> int:
    _run(args, lambda c: c.rewind())
    return _print(args, {"rewound": True}, "rewound")


def _status(args: argparse.Namespace) -> int:
    async def body(c: HostClient) -> tuple[Any, Any]:
        return await c.position(), await c.encryption_status()
    pos, enc = _run(args, body)
    data = {"loaded": pos.loaded, "volser": pos.volser, "block": pos.block, "file": pos.file, "bot": pos.bot,
            "eod": pos.eod, "objects": pos.object_count, "encrypting_model": enc.encrypting_model,
            "mode": enc.mode.name, "write_key_id": enc.write_key_id.hex(), "next_block": enc.next_block,
            "next_block_status": enc.next_status.name, "next_block_key_id": enc.next_key_id.hex()}
    return _print(args, data, "\n".join(f"{k:<18} {v}" for k, v in data.items()))


def _backup(args: argparse.Namespace) -> int:
    files = _run(args, lambda c: bk.backup(c, args.files, block_size=args.block_size, append=args.append,
                                           progress=args.progress))
    return _print(args, [f.to_json() for f in files],
                  "\n".join(f"file {f.index}: {f.name} ({f.size} octets)" for f in files))


def _list(args: argparse.Namespace) -> int:
    files = _run(args, bk.list_files)
    return _print(args, [f.to_json() for f in files],
                  "\n".join(f"{f.index:>4}  {f.size:>12}  {f.sha256[:16]}  {f.name}" for f in files) or "(no files)")


def _restore(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)

    async def body(c: HostClient) -> list[bk.TapeFile]:
        indexes = args.file if args.file else [f.index for f in await bk.list_files(c)]
        return [await bk.restore(c, i, args.out, progress=args.progress) for i in indexes]
    files = _run(args, body)
    return _print(args, [f.to_json() for f in files],
                  "\n".join(f"file {f.index}: {args.out / f.name}" for f in files))


def _verify(args: argparse.Namespace) -> int:
    results = _run(args, lambda c: bk.verify(c, {p.name: p for p in args.sources}))
    _print(args, results, "\n".join(f"{'OK ' if r['ok'] else 'BAD'} file {r['file']}: {r['name']}" for r in results))
    return 0 if results and all(r["ok"] for r in results) else 1


def _tape_new(args: argparse.Namespace) -> int:
    for volser in args.volsers:
        Cartridge.create(args.library, volser)
    print(f"created {', '.join(args.volsers)} in {args.library}")
    return 0


def _tape_list(args: argparse.Namespace) -> int:
    rows = []
    for volser in list_library(args.library):
        try:
            tape = Cartridge.load(args.library, volser)
        except CartridgeError as exc:
            rows.append({"volser": volser, "error": str(exc)})
            continue
        try:
            encrypted = [r for r in tape.records if r.kind is RecordKind.ENCRYPTED]
            rows.append({"volser": volser, "objects": len(tape),
                         "filemarks": sum(r.kind is RecordKind.FILEMARK for r in tape.records),
                         "encrypted_blocks": len(encrypted),
                         "key_ids": sorted({r.key_id.hex() for r in encrypted})})
        finally:
            tape.close()
    text = "\n".join(f"{r['volser']:<16} " + (r["error"] if "error" in r else
                     f"{r['objects']} objects, {r['filemarks']} filemarks, {r['encrypted_blocks']} encrypted "
                     f"blocks, keys {', '.join(r['key_ids']) or '-'}") for r in rows)
    return _print(args, rows, text or "(no cartridges)")
