"""Reference captures and the pcap tools: real runs, decoded, no key in them."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.utils import wrpcap

from lab.captures import SCENARIOS, capture_all
from protocol.constants import DRIVE_LAN_PORT, ISCSI_PORT, MessageType
from protocol.pcap import MSS, read_capture

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "captures"

# What each capture must show, by message type (at least this many).
EXPECTED = {
    "demo": {MessageType.WRITE_EKT: 1, MessageType.WRITE_OKT: 3, MessageType.KEYS_AVAILABLE: 5,
             MessageType.DEVICE_KEY_PACKAGE: 8, MessageType.MEDIA_KEY_PACKAGE: 24, MessageType.VOP_STATUS: 8},
    "ekt-enrolment": {MessageType.WRITE_EKT: 1, MessageType.DEVICE_KEY_PACKAGE: 4, MessageType.KEY_ACK: 4},
    "okt-rekey": {MessageType.WRITE_OKT: 2, MessageType.MEDIA_KEY_PACKAGE: 8, MessageType.KEY_ACK: 12},
    # the host's side is iSCSI now, not in these captures; the scenario checks the sense itself
    "missing-key": {MessageType.ERROR_REPORT: 1, MessageType.TOKEN_STATUS: 1},
    "reset": {MessageType.CLEAR_KEYS: 1},
    # The synchronisation scenarios: the symptom (a decryption error report, or a refused
    # offer that changes nothing), then the recovery (reset, EKT with the PCkey, Apply, OKT).
    "scenario-1": {MessageType.ERROR_REPORT: 1, MessageType.CLEAR_KEYS: 1, MessageType.WRITE_EKT: 3},
    "scenario-2": {MessageType.ERROR_REPORT: 4, MessageType.VOP_RESET_DRIVE: 4, MessageType.WRITE_OKT: 3},
    "scenario-3": {MessageType.ERROR_REPORT: 1, MessageType.VOP_RESET_DRIVE: 1, MessageType.WRITE_OKT: 3},
    "scenario-4": {MessageType.ERROR_REPORT: 1, MessageType.VOP_RESET_DRIVE: 1, MessageType.WRITE_EKT: 3},
    "scenario-5": {MessageType.WRITE_OKT: 3, MessageType.MEDIA_KEY_PACKAGE: 8},
    "scenario-6": {MessageType.WRITE_OKT: 3, MessageType.MEDIA_KEY_PACKAGE: 5},
}


def _counts(path: Path) -> collections.Counter[MessageType]:
    """Every t10k frame by type; iSCSI PDUs (TCP 3260) must decode too, and are not counted."""
    frames = read_capture(path)
    assert frames and not [f.error for f in frames if f.error], [f.error for f in frames if f.error]
    assert all((f.frame is None) != (f.iscsi is None) for f in frames)
    assert all(f.iscsi is None or ISCSI_PORT in (f.src[1], f.dst[1]) for f in frames)
    return collections.Counter(f.frame.message.TYPE for f in frames if f.frame)


SAID: dict[str, list[tuple[str, str]]] = {}
# What each scenario must say it saw, as the seed words it (docs/SCENARIOS.md, "what you see").
SYMPTOMS = {
    "missing-key": ["sense 3/2605/6109", "error 00006109 (missing key)"],
    "reset": ["LED FLASHING_GREEN, VOP ==RESET=="],
    "scenario-1": ["token error LED flashing red, error 0000610A", "drive-01 keeps working"],
    "scenario-2": ["error 0000610A (key message decryption error) from drive-01, drive-02, drive-03 and drive-04"],
    "scenario-3": ["Holding Keys", "error 0000610A (key message decryption error) from drive-04"],
    "scenario-4": ["error 0000610A (key message decryption error) from drive-04", "drive-04 keeps its keys"],
    "scenario-5": ["VOP Holding Keys, encryption LED AMBER", "refused silently"],
    "scenario-6": ["refuses old-pool's OKT silently"],
}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[bytes]]]:
    out = tmp_path_factory.mktemp("captures")
    return out, capture_all(out, said=SAID)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_each_scenario_says_the_symptoms_it_checked_then_the_recovery(
        fresh: tuple[Path, dict[str, list[bytes]]], name: str) -> None:
    phases = [phase for phase, _ in SAID[name]]
    symptoms = [text for phase, text in SAID[name] if phase == "symptom"]
    assert symptoms, SAID[name]
    for expected in SYMPTOMS.get(name, []):
        assert any(expected in text for text in symptoms), (expected, symptoms)
    if name.startswith("scenario-") or name == "missing-key":  # the recovery follows the symptoms
        assert "recovery" in phases and phases.index("recovery") > phases.index("symptom"), phases
        assert "LED RED" in SAID[name][-1][1] or "read on drive-01" in SAID[name][-1][1] or \
            "cleared" in SAID[name][-1][1], SAID[name][-1]


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_fresh_capture_shows_the_scenario_and_no_key(fresh: tuple[Path, dict[str, list[bytes]]], name: str) -> None:
    out, secrets = fresh
    data = (out / f"{name}.pcap").read_bytes()
    assert len(secrets[name]) >= 9
    assert [s.hex() for s in secrets[name] if s in data] == []
    counts = _counts(out / f"{name}.pcap")
    for message_type, at_least in EXPECTED[name].items():
        assert counts[message_type] >= at_least, (message_type.name, counts)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_reference_captures_decode(name: str) -> None:
    counts = _counts(REFERENCE / f"{name}.pcap")
    for message_type, at_least in EXPECTED[name].items():
        assert counts[message_type] >= at_least, (message_type.name, counts)


def test_missing_key_capture_carries_the_seed_codes() -> None:
    """The token's side (ERROR_REPORT 00006109) and the host's (iSCSI: CHECK CONDITION 3/2605/6109),
    with the same key ID."""
    from protocol.iscsi import ScsiResponse
    from protocol.scsi import SenseData

    captured = read_capture(REFERENCE / "missing-key.pcap")
    frames = [f.frame.message for f in captured if f.frame]
    reports = [m for m in frames if m.TYPE is MessageType.ERROR_REPORT]
    assert reports and int(reports[0].error_code) == 0x6109  # type: ignore[union-attr]
    assert any(reports[0].key_id)  # type: ignore[union-attr]
    checks = [SenseData.parse(f.iscsi.data[2:]) for f in captured
              if isinstance(f.iscsi, ScsiResponse) and f.iscsi.status == 0x02]
    missing = [s for s in checks if str(s.seed) == "3/2605/6109"]
    assert [s.key_id for s in missing] == [reports[0].key_id]  # type: ignore[union-attr]


def test_tcp_frames_larger_than_a_segment_are_reassembled() -> None:
    frames = read_capture(REFERENCE / "demo.pcap")
    big = [f for f in frames if f.transport == "tcp" and len(f.raw) > MSS]
    assert big and {f.frame.message.TYPE for f in big} >= {MessageType.WRITE_EKT}  # type: ignore[union-attr]


def t10k(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_pcap_decode_cli(tmp_path: Path) -> None:
    result = t10k("pcap", "decode", str(REFERENCE / "reset.pcap"), "--json")
    assert result.returncode == 0
    rows = json.loads(result.stdout)
    assert any(r["message"] == "CLEAR_KEYS" for r in rows)
    text = t10k("pcap", "decode", str(REFERENCE / "ekt-enrolment.pcap")).stdout
    assert "DEVICE_KEY_PACKAGE" in text and "wrapping=PCKEY" in text and "frame(s)" in text
    mixed = tmp_path / "mixed.pcap"
    wrpcap(str(mixed), [IP(src="127.0.0.9", dst="127.255.255.255") / UDP(sport=7011, dport=DRIVE_LAN_PORT) /
                        b"T10K\x01\x01garbage"])
    rows = json.loads(t10k("pcap", "decode", str(mixed), "--json").stdout)
    assert rows[0]["message"] == "MALFORMED" and "truncated" in rows[0]["error"]
    iscsi = json.loads(t10k("pcap", "decode", str(REFERENCE / "missing-key.pcap"), "--json", "--type", "iscsi").stdout)
    assert iscsi and {r["message"] for r in iscsi} == {"ISCSI"} and "3260" in iscsi[0]["dst"]
    assert [r["fields"]["sense_key_id"] for r in iscsi if r["fields"].get("sense") == "3/2605/6109"] == [
        f.frame.message.key_id.hex() for f in read_capture(REFERENCE / "missing-key.pcap")  # type: ignore[union-attr]
        if f.frame and f.frame.message.TYPE is MessageType.ERROR_REPORT]
    text = t10k("pcap", "decode", str(REFERENCE / "missing-key.pcap")).stdout
    assert "pdu=ScsiCommand" in text and "operation=READ_6" in text and "iSCSI PDU(s)" in text
    assert "malformed" not in text
    (tmp_path / "not.pcap").write_bytes(b"this is not a pcap")
    bad = t10k("pcap", "decode", str(tmp_path / "not.pcap"))
    assert bad.returncode == 1 and "is not a pcap or pcapng file" in bad.stderr and "Traceback" not in bad.stderr
