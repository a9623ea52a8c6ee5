"""The Wireshark dissector: generated from the catalogue, and it agrees with our decoder."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.captures import SCENARIOS
from protocol.constants import MessageType
from protocol.pcap import read_capture
from protocol.wireshark import render_lua

ROOT = Path(__file__).resolve().parents[2]
LUA = ROOT / "wireshark" / "t10k.lua"


def test_the_dissector_is_generated_from_the_catalogue() -> None:
    assert LUA.read_text() == render_lua(), "run: python wireshark/generate.py"


def tshark(capture: Path, *fields: str, display_filter: str | None = None) -> list[list[str]]:
    exe = shutil.which("tshark")
    assert exe, "tshark is not installed: .ci/run installs it (apt-get install tshark)"
    cmd = [exe, "-X", f"lua_script:{LUA}", "-r", str(capture), "-T", "fields"]
    if display_filter:
        cmd += ["-Y", display_filter]
    for f in fields:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_tshark_decodes_what_our_decoder_decodes(name: str) -> None:
    capture = ROOT / "captures" / f"{name}.pcap"
    ours = [f.frame for f in read_capture(capture) if f.frame is not None]
    rows = tshark(capture, "t10k.type", "t10k.csn", "_ws.expert.message")
    types = [int(t, 16) for row in rows if row[0] for t in row[0].split(",")]
    assert types == [int(f.message.TYPE) for f in ours]  # every frame, TCP ones split over segments included
    assert not [row for row in rows if row[2]], "the dissector reported malformed frames"
    key_requests = [row[1].split(",")[0] for row in rows if row[0] == "0x02"]
    assert key_requests == [f.message.csn.hex() for f in ours if f.message.TYPE is MessageType.KEY_REQUEST]


def test_tshark_shows_the_missing_key_error() -> None:
    """The host's side is iSCSI now: Wireshark's own iSCSI/SCSI dissectors show the sense (its
    FSC and key ID are vendor octets 18-27, which our decoder reads: test_captures), ours the
    token's ERROR_REPORT."""
    capture = ROOT / "captures" / "missing-key.pcap"
    (sense,) = tshark(capture, "scsi.sns.key", "scsi.sns.asc", "scsi.sns.ascq",
                      display_filter="scsi.sns.asc == 0x26")
    assert [int(v, 0) for v in sense] == [3, 0x26, 0x05]  # 3/2605/6109
    (report,) = tshark(capture, "t10k.error_code", "t10k.key_id", display_filter="t10k.type == 0x07")
    assert int(report[0], 16) == 0x6109
    (key_id,) = [f.frame.message.key_id for f in read_capture(capture)  # type: ignore[union-attr]
                 if f.frame and f.frame.message.TYPE is MessageType.ERROR_REPORT]
    assert report[1].replace(":", "") == key_id.hex()
