"""Regenerate the reference captures in this directory from real runs of the lab.

    .venv/bin/python captures/regenerate.py

Each is a scenario on loopback (see lab/captures.py), captured at the daemons' sockets.
Keys, nonces and timestamps differ from run to run: the protocol draws them fresh, so
the captures are reproducible in their messages and order, not byte for byte.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lab.captures import capture_all  # noqa: E402

if __name__ == "__main__":
    here = Path(__file__).parent
    for name, secrets in capture_all(here).items():
        data = (here / f"{name}.pcap").read_bytes()
        leaked = [s for s in secrets if s in data]
        print(f"{name}.pcap: {len(data)} octets, {len(secrets)} keys checked, {'LEAK' if leaked else 'no key'} in it")
        if leaked:
            sys.exit(1)
