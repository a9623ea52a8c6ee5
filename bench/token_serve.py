"""How many KEY_REQUESTs one token answers per second, over loopback, token in its own process.

    python bench/token_serve.py [--drives 10000] [--window 2000] [--runs 3]

The token holds an OKT for N CSNs (random sealed octets: the token never opens a package).
A client in this process keeps at most ``--window`` requests outstanding, one per CSN, and
times N answers; the rate sets PULL_SPREAD_PER_CSN_S (protocol/constants.py): the spread
window of an offer to N drives is about as long as the token takes to answer them. A second
pass asks for every CSN again (the duplicate a retry makes) and a third sends the whole pool
at once with no window (a broadcast with no spread at all). Bounded: each pass stops after 60 s.
Run it in a private network namespace: ``unshare -n sh -c 'ip link set lo up && python ...'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

from protocol import MediaKeyPackage, OktEntry, WrappedMediaKey, WrappedReceipt, WriteOkt, decode_header, encode
from protocol import KeyRequest, envelope
from protocol.constants import (
    NONCE_SIZE,
    REPORT_KEY_SIZE,
    TOKEN_LAN_PORT,
    WRAPPED_KEY_SIZE,
    WRAPPED_RECEIPT_SIZE,
    KeyKind,
    MessageType,
    TokenMode,
)
from protocol.messages import RECEIPT_HASH_SIZE

TOKEN_IP = "127.0.9.1"
CLIENT_IP = "127.0.9.2"


def okt(n: int) -> WriteOkt:
    ts = 1_800_000_000_000_000
    key_id = os.urandom(8)
    entries = []
    for i in range(n):
        csn = (0x5800_0000_0000_0000 + i).to_bytes(8, "big")
        pkg = MediaKeyPackage(csn, ts, os.urandom(8), key_id, WrappedReceipt(os.urandom(NONCE_SIZE), os.urandom(WRAPPED_RECEIPT_SIZE)),
                              (WrappedMediaKey(key_id, os.urandom(NONCE_SIZE), os.urandom(WRAPPED_KEY_SIZE)),))
        entries.append(OktEntry(pkg, os.urandom(RECEIPT_HASH_SIZE), os.urandom(REPORT_KEY_SIZE), ()))
    announcement = envelope.sign_announcement(envelope.new_signing_key(), TokenMode.OKT, ts, [e.package.csn for e in entries])
    return WriteOkt("bench", ts, tuple(entries), announcement)


def serve(state_dir: str, secret: bytes, ready: multiprocessing.synchronize.Event, stop: multiprocessing.synchronize.Event) -> None:
    from token_daemon.service import TokenConfig, TokenService

    async def main() -> None:
        async with TokenService(TokenConfig(TOKEN_IP, Path(state_dir), secret, announce_interval_s=3600)):
            ready.set()
            while not stop.is_set():
                await asyncio.sleep(0.05)

    asyncio.run(main())


def ask(requests: list[bytes], window: int | None) -> tuple[float, int]:
    """(seconds until every request was answered or 60 s passed, answers)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    sock.bind((CLIENT_IP, 0))
    sock.settimeout(0.5)
    to = (TOKEN_IP, TOKEN_LAN_PORT)
    answered = sent = 0
    start = time.perf_counter()
    limit = len(requests) if window is None else window
    while sent < min(limit, len(requests)):
        sock.sendto(requests[sent], to)
        sent += 1
    while answered < len(requests) and time.perf_counter() - start < 60:
        try:
            data = sock.recv(65535)
        except TimeoutError:
            if window is None:
                break  # the rest was dropped: nothing more will come
            continue
        if decode_header(data).message_type is MessageType.MEDIA_KEY_PACKAGE:
            answered += 1
        if sent < len(requests):
            sock.sendto(requests[sent], to)
            sent += 1
    elapsed = time.perf_counter() - start
    sock.close()
    return elapsed, answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=10_000)
    parser.add_argument("--window", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    from token_daemon.memory import MemoryStore, TokenMemory

    secret = os.urandom(32)
    write = okt(args.drives)
    csns = [e.package.csn for e in write.entries]
    results: dict[str, list[float]] = {"first_per_s": [], "again_per_s": [], "burst_per_s": [], "burst_answered": []}
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as d:
            memory = TokenMemory.blank()
            memory.counter_set = True
            memory.load_write(write)
            MemoryStore(Path(d), secret).save(memory)
            ctx = multiprocessing.get_context("spawn")
            ready, stop = ctx.Event(), ctx.Event()
            proc = ctx.Process(target=serve, args=(d, secret, ready, stop))
            proc.start()
            try:
                if not ready.wait(60):
                    raise SystemExit("the token did not start")
                seq = run * 3 * len(csns)
                for name, window in (("first", args.window), ("again", args.window), ("burst", None)):
                    reqs = [encode(KeyRequest(c, KeyKind.MEDIA, 0), sequence=seq + i) for i, c in enumerate(csns)]
                    seq += len(csns)
                    time.sleep(1.1)  # a new budget second for every CSN
                    elapsed, answered = ask(reqs, window)
                    results[f"{name}_per_s"].append(answered / elapsed)
                    if name == "burst":
                        results["burst_answered"].append(answered)
            finally:
                stop.set()
                proc.join(10)
    summary = {k: {"min": min(v), "median": statistics.median(v), "max": max(v)} for k, v in results.items()}
    print(json.dumps({"drives": args.drives, "window": args.window, "runs": args.runs} | summary, indent=2))


if __name__ == "__main__":
    main()
