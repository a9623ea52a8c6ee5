"""``t10k pcap decode FILE``: a readable timeline of a capture."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from protocol.pcap import CaptureError, describe, read_capture


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pcap = sub.add_parser("pcap", help="decode captures of t10k traffic")
    psub = pcap.add_subparsers(dest="pcap_command", required=True)
    dec = psub.add_parser("decode", help="print a timeline: who, what, CSN, timestamps, errors")
    dec.add_argument("file", type=Path)
    dec.add_argument("--json", action="store_true", help="one JSON object per frame, in a list")
    dec.add_argument("--type", action="append", help="only these message types (repeat)")
    dec.set_defaults(func=_decode)
    rep = psub.add_parser("replay", help="replay a capture's requests against live daemons; compare replies")
    rep.add_argument("file", type=Path)
    rep.add_argument("--to", help="send every request to this IP (default: the captured destinations)")
    rep.add_argument("--broadcast", help="also replay LAN broadcasts (KEYS_AVAILABLE, CLEAR_KEYS) to this address")
    rep.add_argument("--source", default="127.0.0.250", help="local address to replay from (default 127.0.0.250)")
    rep.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS", help="wait per reply")
    rep.add_argument("--allow-vop-reset", action="store_true",
                     help="also replay VOP Reset Drive (unauthenticated: it really wipes the drives)")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(func=_replay)


def _decode(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CaptureError(f"{args.file} does not exist")
    frames = read_capture(args.file)
    wanted = {t.upper() for t in args.type} if args.type else None
    start = frames[0].time if frames else 0.0
    rows = []
    for f in frames:
        name = f.frame.message.TYPE.name if f.frame else "MALFORMED"
        if wanted and name not in wanted:
            continue
        row = {"t": round(f.time - start, 6), "transport": f.transport, "src": f"{f.src[0]}:{f.src[1]}",
               "dst": f"{f.dst[0]}:{f.dst[1]}", "message": name}
        if f.frame is not None:
            row |= {"sequence": f.frame.sequence, "reply": f.frame.is_reply, "authenticated": f.frame.authenticated,
                    "fields": describe(f.frame.message)}
        else:
            row["error"] = f.error
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        detail = r.get("error") or " ".join(f"{k}={v}" for k, v in r["fields"].items() if not isinstance(v, dict))
        print(f"{r['t']:10.6f} {r['transport']} {r['src']:>21} -> {r['dst']:<21} {r['message']:<22} {detail}")
    malformed = sum(1 for r in rows if r["message"] == "MALFORMED")
    print(f"{len(rows)} frame(s){f', {malformed} malformed' if malformed else ''}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import collections

    from .replay import replay

    if not args.file.is_file():
        raise CaptureError(f"{args.file} does not exist")
    results = asyncio.run(replay(args.file, to=args.to, broadcast=args.broadcast, source=args.source,
                                 timeout_s=args.timeout, allow_vop_reset=args.allow_vop_reset))
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
        return 0
    for r in results:
        print(f"{r.index:5d} {r.transport} {r.to:<22} {r.request:<22} {r.verdict:<18} "
              f"{r.replay_reply or '-'}{'  (' + r.note + ')' if r.note else ''}")
    counts = collections.Counter(r.verdict for r in results)
    print(", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no requests in the capture")
    return 0
