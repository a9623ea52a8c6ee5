"""Replaying every reference capture against a live lab changes nothing the protocol protects."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kms_client import station
from lab.addresses import DEFAULT_NET, free_net
from lab.captures import SCENARIOS
from lab.cluster import Lab
from lab.replay import replay
from protocol.constants import EncryptionLed
from tests.integration.conftest import enrol_and_arm

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]
MANAGEMENT = {"WRITE_EKT", "WRITE_OKT", "CLEAR_ERROR", "READ_STATUS", "RESYNC"}


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_replay_changes_nothing_protected(lab: Lab, name: str) -> None:
    await enrol_and_arm(lab, tokens=("token-A", "token-B"))
    reset_drive = lab.drive_names[-1]
    await lab.vop_reset(reset_drive)
    before = await lab.vop_all()
    tokens_before = {t: await station.token_status(lab.kms, t) for t in lab.tokens}

    results = await replay(ROOT / "captures" / f"{name}.pcap", broadcast=lab.net.broadcast, timeout_s=0.5,
                           lan_port=lab.net.lan_port, renumber=(DEFAULT_NET.network, lab.net.network),
                           secrets=[lab.kms.token_secret(t) for t in lab.tokens])

    assert results
    assert {r.verdict for r in results if r.request == "VOP_RESET_DRIVE"} <= {"skipped"}
    management = [r for r in results if r.request in MANAGEMENT]
    assert management and {r.verdict for r in management} == {"refused as replay"}
    after = await lab.vop_all()
    for drive, status in after.items():
        if drive == reset_drive:  # a reset drive is not re-armed by anything replayed
            assert status.reset and not status.encryption_enabled and status.media_key_count == 0
        else:
            assert (status.led, status.okt_timestamp, status.write_key_id) == (
                EncryptionLed.RED, before[drive].okt_timestamp, before[drive].write_key_id)
    for token, was in tokens_before.items():
        now = await station.token_status(lab.kms, token)
        assert (now.mode, now.timestamp, now.packages_held) == (was.mode, was.timestamp, was.packages_held)
    if any(r.request == "VOP_STATUS_REQUEST" for r in results):
        assert {r.verdict for r in results if r.request == "VOP_STATUS_REQUEST"} == {"same"}


def test_replay_to_a_dead_address_says_what_it_waits_for_and_fails() -> None:
    dead = free_net().token_ip(0)  # nothing answers there (not a fixed address another lab may hold)
    result = subprocess.run([sys.executable, "-m", "lab.cli", "pcap", "replay", str(ROOT / "captures" / "reset.pcap"),
                             "--ip", dead, "--timeout", "0.05", "--json"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and result.stdout == ""
    progress = result.stderr.splitlines()
    assert progress[0].startswith("replay: [1/") and f"to {dead}:7020, waiting up to 0.05 s for its reply" in progress[0]
    assert progress[-1] == (f"t10k: error: nothing answers at {dead}: 3 request(s) in a row got no reply within "
                            "0.05 s (is the daemon running there? is --ip right?)")


async def test_replay_cli_reports_each_request(lab: Lab, tmp_path: Path) -> None:
    await enrol_and_arm(lab)
    secret_files = []
    for t in lab.tokens:
        secret_files += ["--secret-file", str(tmp_path / f"{t}.secret")]
        (tmp_path / f"{t}.secret").write_text(lab.kms.token_secret(t).hex() + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.cli", "pcap", "replay", str(ROOT / "captures" / "okt-rekey.pcap"), "--timeout",
        "0.5", "--json", "--renumber", f"{DEFAULT_NET.network}={lab.net.network}", *secret_files,
        "--drive-lan-port", str(lab.net.lan_port), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    rows = json.loads(out)
    steps = [line for line in err.decode().splitlines() if line.startswith("replay: [")]
    assert rows and len(steps) == len(rows) and steps[-1].startswith(f"replay: [{len(rows)}/{len(rows)}]")
    assert "refused as replay" in {r["verdict"] for r in rows}


async def test_a_replayed_vop_reset_is_refused(lab: Lab) -> None:
    """A captured VOP Reset Drive answers its own connection's challenge: replayed on another
    connection, the drive refuses it and keeps its keys (protocol version 3)."""
    await enrol_and_arm(lab)
    results = await replay(ROOT / "captures" / "scenario-4.pcap", allow_vop_reset=True, timeout_s=0.5,
                           renumber=(DEFAULT_NET.network, lab.net.network))
    assert [r.verdict for r in results if r.request == "VOP_RESET_DRIVE"] == ["refused as replay"]
    status = await lab.vop("drive-04")
    assert not status.reset and status.led is EncryptionLed.RED
