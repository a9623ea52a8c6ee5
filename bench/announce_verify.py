"""What checking signed announcements costs a host of many drives (protocol version 3).

    python bench/announce_verify.py [--drives 10000]

N sans-I/O drives in one process, each holding the KMS public key, receive one signed
KEYS_AVAILABLE and then one forged one (timestamp 2**63). It prints the time per drive for
each and the signature checks actually made (the cache in protocol/envelope.py makes it one
per distinct datagram, not one per drive), next to one uncached Ed25519 verify. No sockets.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import protocol as p  # noqa: E402
from drive_daemon.drive import AnnouncementRejected, Drive, PullScheduled  # noqa: E402
from drive_daemon.nvram import Nvram  # noqa: E402
from protocol import envelope  # noqa: E402
from protocol.constants import TokenMode  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, default=10_000)
    n = parser.parse_args().drives
    signing = envelope.new_signing_key()
    public = envelope.public_key_of(signing)
    csns = [(0x5900_0000_0000_0000 + i).to_bytes(8, "big") for i in range(n)]
    drives = [Drive(c, os.urandom(32), Nvram(os.urandom(32), os.urandom(8), 1, 1, False, public)) for c in csns]
    signed = envelope.sign_announcement(signing, TokenMode.OKT, 2, csns)
    real = p.encode(p.KeysAvailable(b"\x01" * 8, TokenMode.OKT, 2, signed.csn_count, signed.csn_filter, signed.signature))
    forged = p.encode(p.KeysAvailable(b"\x01" * 8, TokenMode.OKT, 2**63, n, signed.csn_filter, os.urandom(64)))
    figures: dict[str, float] = {"drives": n, "datagram_octets": len(real)}
    for name, data, event in (("signed", real, PullScheduled), ("forged", forged, AnnouncementRejected)):
        frame = p.decode(data)
        _, misses = envelope.verify_cache_info()
        start = time.perf_counter()
        outcomes = [d.receive(frame, ("127.0.0.21", 7011), 1.0) for d in drives]
        elapsed = time.perf_counter() - start
        figures[f"{name}_us_per_drive"] = round(elapsed / n * 1e6, 2)
        figures[f"{name}_verifies"] = envelope.verify_cache_info()[1] - misses
        figures[f"{name}_events"] = sum(isinstance(e, event) for o in outcomes for e in o.events)
    msg = envelope.announcement_signed_bytes(TokenMode.OKT, 3, signed.csn_count, signed.csn_filter)
    start = time.perf_counter()
    for i in range(200):
        envelope._verify_cached.__wrapped__(public, msg + bytes([i]), signed.signature)  # uncached
    figures["one_uncached_verify_us"] = round((time.perf_counter() - start) / 200 * 1e6, 1)
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
