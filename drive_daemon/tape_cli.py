"""``t10k tape ...``: the cartridge library (a directory of VOLSER.tape files), as its operator sees it."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from protocol.cli_options import add_json

from .cartridge import Cartridge, CartridgeError, RecordKind, list_library
from .cli import register_tape_loading


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    tape = sub.add_parser("tape", help="the cartridge library (a directory of VOLSER.tape files)")
    tsub = tape.add_subparsers(dest="tape_command", required=True)
    p = tsub.add_parser("new", help="create blank cartridges")
    p.add_argument("--library", type=Path, required=True)
    add_json(p)
    p.add_argument("volsers", nargs="+")
    p.set_defaults(func=_tape_new)
    p = tsub.add_parser("list", help="list cartridges: objects, encrypted blocks, key IDs used (no keys needed)")
    p.add_argument("--library", type=Path, required=True)
    add_json(p)
    p.set_defaults(func=_tape_list)
    register_tape_loading(tsub)
    return tsub


def _print(args: argparse.Namespace, data: Any, text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _tape_new(args: argparse.Namespace) -> int:
    for volser in args.volsers:
        Cartridge.create(args.library, volser)
    return _print(args, {"created": args.volsers, "library": str(args.library)},
                  f"created {', '.join(args.volsers)} in {args.library}")


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
