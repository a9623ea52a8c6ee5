"""``t10k pcap decode FILE``: a readable timeline of a capture; ``t10k pcap replay FILE``."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from pathlib import Path
from typing import Any, Callable

from protocol import AuthenticationError, DecodeError, Frame, SealedBody
from protocol.cli_options import Progress, add_broadcast, add_ip, add_json
from protocol.constants import DRIVE_LAN_PORT, HEADER_SIZE, MessageType
from protocol.describe import describe, describe_iscsi, render
from protocol.pcap import CapturedFrame, CaptureError, read_capture

MALFORMED = "MALFORMED"
ISCSI = "ISCSI"  # a PDU between a host and a drive's tape LUN (TCP 3260), not a t10k frame
TYPES = sorted(t.name for t in MessageType) + [ISCSI, MALFORMED]
GIVE_UP_AFTER = 3  # requests in a row that a host never answers: it is not there


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    pcap = sub.add_parser("pcap", help="decode captures of t10k traffic")
    psub = pcap.add_subparsers(dest="pcap_command", required=True)
    dec = psub.add_parser("decode", help="print a timeline: who, what, and every field's value")
    dec.add_argument("file", type=Path)
    add_json(dec, "one JSON object per frame, in a list")
    dec.add_argument("--type", action="append", type=str.upper, choices=TYPES, metavar="TYPE",
                     help=f"only these message types (repeat): {', '.join(TYPES)}")
    dec.add_argument("--secret-file", type=Path, metavar="FILE",
                     help="a token secret (64 hex digits): open the management frames sealed under it "
                          "(without it they show as 'sealed, N octets')")
    dec.set_defaults(func=_decode)
    rep = psub.add_parser("replay", help="replay a capture's requests against live daemons; compare replies")
    rep.add_argument("file", type=Path)
    add_ip(rep, "the daemon", required=False,
           help="send every request to this address (default: each to its captured destination)")
    rep.add_argument("--to", dest="ip", help=argparse.SUPPRESS)  # its name before --ip
    add_broadcast(rep, "also replay LAN broadcasts (KEYS_AVAILABLE, CLEAR_KEYS) to this address", default=None)
    rep.add_argument("--renumber", metavar="CAPTURED=LIVE", type=_renumbering,
                     help="move captured destinations in one network onto a lab elsewhere, "
                          "e.g. 127.0.0.0/24=127.5.6.0/24 (the reference captures use 127.0.0.0/24)")
    rep.add_argument("--drive-lan-port", type=int, default=DRIVE_LAN_PORT,
                     help=f"the live lab's drive-LAN port, for replayed broadcasts (default {DRIVE_LAN_PORT})")
    rep.add_argument("--source", default="127.0.0.250", help="local address to replay from (default 127.0.0.250)")
    rep.add_argument("--timeout", type=float, default=1.0, metavar="SECONDS", help="wait per reply")
    rep.add_argument("--secret-file", type=Path, action="append", default=[], metavar="FILE",
                     help="a token secret (repeat): open the sealed management replies, to judge them")
    rep.add_argument("--allow-vop-reset", action="store_true",
                     help="also replay VOP Reset Drive (a drive refuses it: it answers another connection's challenge)")
    add_json(rep)
    rep.set_defaults(func=_replay)


def _renumbering(text: str) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """``CAPTURED=LIVE``: two networks of the same size."""
    try:
        old, new = (ipaddress.IPv4Network(part.strip()) for part in text.split("="))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give CAPTURED=LIVE networks, e.g. 127.0.0.0/24=127.5.6.0/24") \
            from None
    if old.prefixlen != new.prefixlen:
        raise argparse.ArgumentTypeError(f"{text!r}: the two networks must be the same size")
    return old, new


def _decode(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        raise CaptureError(f"{args.file} does not exist")
    frames = read_capture(args.file)
    secret = None
    if args.secret_file is not None:
        from token_daemon.service import read_secret_file

        secret = read_secret_file(args.secret_file)
    wanted = set(args.type) if args.type else None
    start = frames[0].time if frames else 0.0
    if args.json:
        # One row per line: still one JSON array. Each row's head is formatted here and its
        # fields by json's C encoder (indent= would use its pure-Python one, a third of the
        # time of a large capture): the same octets as json.dumps(row, separators=(",", ":")).
        encode = _compact_encoder()
        described: dict[tuple[str, bytes], str] = {}  # a body's fields, encoded once (retries repeat bodies)
        addresses: dict[tuple[str, int], str] = {}  # each address as a JSON string, made once
        lines = []
        for f in frames:
            frame = f.frame
            name = _NAMES[frame.message.TYPE] if frame else ISCSI if f.iscsi is not None else MALFORMED
            if wanted and name not in wanted:
                continue
            if frame is None:
                lines.append(encode(_row(f, name, start, secret)))
                continue
            t = round(f.time - start, 6)
            reply, authenticated = _flags(frame)
            if authenticated:
                fields = encode(_fields(frame, secret))
            else:  # its message is what the codec makes of its type and body, nothing else
                key = (name, frame.raw[HEADER_SIZE:])
                fields = described.get(key) or described.setdefault(key, encode(describe(frame.message)))
            src = addresses.get(f.src) or addresses.setdefault(f.src, _text(f"{f.src[0]}:{f.src[1]}"))
            dst = addresses.get(f.dst) or addresses.setdefault(f.dst, _text(f"{f.dst[0]}:{f.dst[1]}"))
            lines.append(f'{{"t":{float.__repr__(t) if t - t == 0 else encode(t)},"transport":{_text(f.transport)},'
                         f'"src":{src},"dst":{dst},'
                         f'"message":"{name}","sequence":{frame.sequence},"reply":{_BOOL[reply]},'
                         f'"authenticated":{_BOOL[authenticated]},"fields":{fields}}}')
        print("[\n" + ",\n".join(lines) + "\n]")
        return 0
    rows = []
    for f in frames:
        name = _NAMES[f.frame.message.TYPE] if f.frame else ISCSI if f.iscsi is not None else MALFORMED
        if not wanted or name in wanted:
            rows.append(_row(f, name, start, secret))
    for r in rows:
        more: list[str] = []
        if "fields" in r:
            detail, more = render(r["fields"], indent=" " * 13)
        else:
            detail = f"{r['error']} raw={r['raw']}"
        print(f"{r['t']:10.6f} {r['transport']} {r['src']:>21} -> {r['dst']:<21} {r['message']:<22} {detail}")
        for line in more:
            print(line)
    malformed = sum(1 for r in rows if r["message"] == MALFORMED)
    iscsi = sum(1 for r in rows if r["message"] == ISCSI)
    print(f"{len(rows)} frame(s){f', {iscsi} iSCSI PDU(s)' if iscsi else ''}"
          f"{f', {malformed} malformed' if malformed else ''}")
    return 0


#: Names looked up, not read from each enum member (a rekey capture holds tens of thousands).
_NAMES = {t: t.name for t in MessageType}
_BOOL = {True: "true", False: "false"}
_text = json.encoder.encode_basestring_ascii  # a JSON string, as json.dumps writes it
_FLAGS: dict[object, tuple[bool, bool]] = {}


def _compact_encoder() -> Callable[[object], str]:
    """``json.dumps(value, separators=(",", ":"))``, its C encoder made once rather than per call."""
    options = json.JSONEncoder(separators=(",", ":"))
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without json's C accelerator
        return options.encode
    encoder = make({}, options.default, json.encoder.encode_basestring_ascii, None, options.key_separator,
                   options.item_separator, options.sort_keys, options.skipkeys, options.allow_nan)

    def encode(value: object) -> str:
        if isinstance(value, str):
            return json.encoder.encode_basestring_ascii(value)
        return "".join(encoder(value, 0))

    return encode


def _flags(frame: Frame) -> tuple[bool, bool]:
    """(is_reply, authenticated) of a frame, worked out once per header flags value."""
    known = _FLAGS.get(frame.flags)
    if known is None:
        known = _FLAGS[frame.flags] = (frame.is_reply, frame.authenticated)
    return known


def _row(f: CapturedFrame, name: str, start: float, secret: bytes | None) -> dict[str, Any]:
    """One frame as data: its time from the first, addresses, message and fields."""
    row: dict[str, Any] = {"t": round(f.time - start, 6), "transport": f.transport,
                          "src": f"{f.src[0]}:{f.src[1]}", "dst": f"{f.dst[0]}:{f.dst[1]}", "message": name}
    if f.frame is not None:
        reply, authenticated = _flags(f.frame)
        row |= {"sequence": f.frame.sequence, "reply": reply, "authenticated": authenticated,
                "fields": _fields(f.frame, secret)}
    elif f.iscsi is not None:
        row |= {"fields": describe_iscsi(f.iscsi)}
    else:
        row |= {"error": f.error, "raw": f.raw.hex()}
    return row


def _fields(frame: Frame, secret: bytes | None) -> dict[str, object]:
    """A message's fields; a sealed management frame's size and counter, or, opened under
    ``secret`` (when it opens), its fields and counter."""
    if not frame.authenticated:
        return describe(frame.message)
    if secret is not None:
        try:
            return describe(frame.open(secret).message) | {"counter": frame.counter}
        except (AuthenticationError, DecodeError):
            pass  # sealed under another token's secret
    assert isinstance(frame.message, SealedBody)
    return {"body": f"sealed, {frame.message.sealed_octets} octets", "counter": frame.counter}


def _replay(args: argparse.Namespace) -> int:
    import asyncio
    import collections

    from .replay import replay

    if not args.file.is_file():
        raise CaptureError(f"{args.file} does not exist")
    from token_daemon.service import read_secret_file

    secrets = [read_secret_file(path) for path in args.secret_file]
    progress = Progress("replay")
    try:
        results = asyncio.run(replay(args.file, to=args.ip, broadcast=args.broadcast, source=args.source,
                                     timeout_s=args.timeout, allow_vop_reset=args.allow_vop_reset,
                                     progress=progress, give_up_after=GIVE_UP_AFTER, renumber=args.renumber,
                                     lan_port=args.drive_lan_port, secrets=secrets))
    finally:
        progress.close()
    if args.json:
        print(json.dumps([r.to_json() for r in results], indent=1))
    else:
        for r in results:
            print(f"{r.index:5d} {r.transport} {r.to:<22} {r.request:<22} {r.verdict:<18} "
                  f"{r.replay_reply or '-'}{'  (' + r.note + ')' if r.note else ''}")
        counts = collections.Counter(r.verdict for r in results)
        print(", ".join(f"{n} {v}" for v, n in sorted(counts.items())) or "no requests in the capture")
    asked = [r for r in results if r.verdict not in ("injected", "skipped")]
    if asked and all(r.verdict == "no reply" for r in asked):
        where = args.ip or ", ".join(sorted({r.to for r in asked}))
        print(f"t10k: error: nothing answered at {where}: {len(asked)} request(s), no reply within "
              f"{args.timeout:g} s each (is the daemon running there?)", file=sys.stderr)
        return 1
    return 0
