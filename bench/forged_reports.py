"""What a forged ERROR_REPORT costs a token (issue 13, finding 8), sans I/O.

    .venv/bin/python bench/forged_reports.py [--count 68000] [--drives 1000]

A token holding an OKT for --drives drives takes --count forged reports (real CSNs, the
live write's timestamp, random key IDs and MACs: the worst an attacker without PCkeys can
send) through decode and Token.receive_lan, then one real report. It prints the time per
forged report, how many were recorded (must be 0) and the status size. No sockets: this is
the token's own cost, not the network's. Bounded by --count.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import protocol as p  # noqa: E402
from protocol.constants import ErrorCode  # noqa: E402
from tests.site import TOKEN_A, arm, make_site  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=68_000)
    parser.add_argument("--drives", type=int, default=1_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        site = make_site(Path(work), drive_count=args.drives)
        arm(site)
        token = site.lan.tokens[TOKEN_A]
        ts = token.memory.timestamp
        forged = [p.encode(p.ErrorReport(site.made[i % args.drives].csn, ErrorCode.MISSING_KEY, os.urandom(8), ts,
                                         os.urandom(16))) for i in range(args.count)]
        started = time.perf_counter()
        recorded = 0
        for data in forged:
            out = token.receive_lan(p.decode(data), ("127.0.1.1", 7012), 1)
            recorded += out.persist
        elapsed = time.perf_counter() - started
        real = p.reportauth.signed_report(site.made[0].pckey, site.made[0].csn, ErrorCode.MISSING_KEY, bytes(8), ts)
        token.receive_lan(p.decode(p.encode(real)), ("127.0.1.1", 7012), 2)
        status = p.encode(token.status())
    print(json.dumps({"forged": args.count, "drives": args.drives, "seconds": round(elapsed, 3),
                      "us_per_forged_report": round(elapsed / args.count * 1e6, 1), "recorded_forged": recorded,
                      "errors_after_real_report": len(token.status().errors), "status_octets": len(status)}))


if __name__ == "__main__":
    main()
