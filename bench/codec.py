"""Codec speed: the declared construct layouts, the fast codec compiled from them, and
hand-written ``struct`` code for the same layouts, in the same run.

    .venv/bin/python bench/codec.py [--rounds 3] [--n 20000]

For the messages of the hot path (KEY_REQUEST, KEY_ACK, MEDIA_KEY_PACKAGE with 32 keys,
KEYS_AVAILABLE) it times one encode plus one decode, each producing or taking the
protocol's dataclass as the daemons do, and prints microseconds (min/median/max of the
rounds) and the ratios fast/struct and construct/struct. The struct baselines live only
here: they are the yardstick, not a second home of the layouts.
"""

from __future__ import annotations

import argparse
import statistics
import struct
import sys
import time
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol import fastcodec  # noqa: E402
from protocol import messages as m  # noqa: E402
from protocol.constants import KeyKind, MessageType  # noqa: E402
from protocol.csn_filter import CsnFilter  # noqa: E402
from protocol.layouts import BODIES  # noqa: E402

CSN, KEY_ID, DK = bytes.fromhex("5700000000000001"), bytes.fromhex("0000000100000007"), bytes(range(8))

# --- the yardstick: struct code written by hand for the same layouts ---------------------

_REQ = struct.Struct(">8sBQ")
_ACK = struct.Struct(">8sBQ16s")
_PKG_HEAD = struct.Struct(">8sQ8s8s12s32sB")
_WRAPPED = struct.Struct(">8s12s48s")
_AVAIL_HEAD = struct.Struct(">8sBQLBH")


def struct_request(msg: m.KeyRequest) -> m.KeyRequest:
    body = _REQ.pack(msg.csn, int(msg.kind), msg.held_timestamp)
    csn, kind, held = _REQ.unpack(body)
    return m.KeyRequest(csn, KeyKind(kind), held)


def struct_ack(msg: m.KeyAck) -> m.KeyAck:
    body = _ACK.pack(msg.csn, int(msg.kind), msg.timestamp, msg.receipt)
    csn, kind, ts, receipt = _ACK.unpack(body)
    return m.KeyAck(csn, KeyKind(kind), ts, receipt)


def struct_package(msg: m.MediaKeyPackage) -> m.MediaKeyPackage:
    parts = [_PKG_HEAD.pack(msg.csn, msg.okt_timestamp, msg.device_key_id, msg.write_key_id,
                            msg.receipt.nonce, msg.receipt.wrapped, len(msg.media_keys))]
    parts += [_WRAPPED.pack(k.key_id, k.nonce, k.wrapped) for k in msg.media_keys]
    body = b"".join(parts)
    csn, ts, dk, wk, rn, rw, n = _PKG_HEAD.unpack_from(body)
    keys = tuple(m.WrappedMediaKey(*_WRAPPED.unpack_from(body, _PKG_HEAD.size + i * _WRAPPED.size)) for i in range(n))
    return m.MediaKeyPackage(csn, ts, dk, wk, m.WrappedReceipt(rn, rw), keys)


def struct_available(msg: m.KeysAvailable) -> m.KeysAvailable:
    f = msg.csn_filter
    body = (_AVAIL_HEAD.pack(msg.token_id, int(msg.mode), msg.timestamp, msg.csn_count, f.hash_count, len(f.bits))
            + f.bits + msg.signature)
    tid, mode, ts, count, hashes, n = _AVAIL_HEAD.unpack_from(body)
    bits = body[_AVAIL_HEAD.size:_AVAIL_HEAD.size + n]
    signature = body[_AVAIL_HEAD.size + n:_AVAIL_HEAD.size + n + 64]
    return m.KeysAvailable(tid, m.TokenMode(mode), ts, count, CsnFilter(hashes, bits), signature)


# --- the contenders ------------------------------------------------------------------------


def samples() -> dict[str, tuple[m.Message, Callable[[m.Message], m.Message]]]:
    from tests.vectors import sample_messages
    s = sample_messages()
    pkg = s[MessageType.MEDIA_KEY_PACKAGE]
    assert isinstance(pkg, m.MediaKeyPackage)
    keys = tuple(m.WrappedMediaKey(i.to_bytes(8, "big"), bytes(12), bytes(48)) for i in range(1, 33))
    pkg32 = m.MediaKeyPackage(pkg.csn, pkg.okt_timestamp, pkg.device_key_id, keys[0].key_id, pkg.receipt, keys)
    return {
        "KEY_REQUEST": (s[MessageType.KEY_REQUEST], struct_request),  # type: ignore[dict-item]
        "KEY_ACK": (s[MessageType.KEY_ACK], struct_ack),  # type: ignore[dict-item]
        "MEDIA_KEY_PACKAGE (32 keys)": (pkg32, struct_package),  # type: ignore[dict-item]
        "KEYS_AVAILABLE": (s[MessageType.KEYS_AVAILABLE], struct_available),  # type: ignore[dict-item]
    }


def construct_round(msg: m.Message) -> m.Message:
    layout = BODIES[msg.TYPE]
    return layout.parse(layout.build(msg))  # type: ignore[no-any-return]


def fast_round(msg: m.Message) -> m.Message:
    body = fastcodec.try_build(msg)
    assert body is not None
    out = fastcodec.try_parse(msg.TYPE, body)
    assert out is not None
    return out


def per_call_us(fn: Callable[[m.Message], m.Message], msg: m.Message, n: int) -> float:
    assert fn(msg) == msg, f"{fn.__name__} does not round-trip {type(msg).__name__}"
    start = time.perf_counter()
    for _ in range(n):
        fn(msg)
    return (time.perf_counter() - start) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=20_000, help="encode+decode pairs per measurement")
    args = ap.parse_args()
    if args.rounds < 1 or args.n < 1:
        ap.error("--rounds and --n must be at least 1")
    print(f"encode+decode, microseconds per message: min/median/max of {args.rounds} rounds of {args.n}")
    for name, (msg, baseline) in samples().items():
        times: dict[str, list[float]] = {"struct": [], "fast": [], "construct": []}
        for _ in range(args.rounds):
            times["struct"].append(per_call_us(baseline, msg, args.n))
            times["fast"].append(per_call_us(fast_round, msg, args.n))
            times["construct"].append(per_call_us(construct_round, msg, max(1, args.n // 10)))
        med = {k: statistics.median(v) for k, v in times.items()}
        cells = "  ".join(f"{k} {min(v):.1f}/{med[k]:.1f}/{max(v):.1f}" for k, v in times.items())
        print(f"{name:28} {cells}  fast/struct x{med['fast'] / med['struct']:.2f}  "
              f"construct/struct x{med['construct'] / med['struct']:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
