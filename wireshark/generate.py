"""Regenerate wireshark/t10k.lua from the construct catalogue: python wireshark/generate.py"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from protocol.wireshark import render_lua  # noqa: E402

if __name__ == "__main__":
    out = Path(__file__).with_name("t10k.lua")
    out.write_text(render_lua())
    print(f"wrote {out}")
