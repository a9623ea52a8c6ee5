"""docs/ISCSI.md states the values the code negotiates: no drift."""

from __future__ import annotations

from pathlib import Path

from drive_daemon.iscsi import IscsiConfig
from host.iscsi_initiator import INITIATOR_OFFER

from .pair import TARGET, Pair

DOC = (Path(__file__).resolve().parents[3] / "docs" / "ISCSI.md").read_text()


def row(key: str) -> list[str]:
    for line in DOC.splitlines():
        if line.startswith(f"| {key} "):
            return [cell.strip() for cell in line.strip("|").split("|")]
    raise AssertionError(f"docs/ISCSI.md has no row for {key}")


def test_the_table_matches_both_sides() -> None:
    target = IscsiConfig(target_name=TARGET).target_keys()
    params = Pair().login()[0].params
    results = {"MaxRecvDataSegmentLength": "256 KiB each way", "ImmediateData": "Yes" if params.immediate_data else "No",
               "InitialR2T": "Yes" if params.initial_r2t else "No", "FirstBurstLength": str(params.first_burst),
               "MaxBurstLength": str(params.max_burst), "MaxOutstandingR2T": str(params.max_outstanding_r2t),
               "ErrorRecoveryLevel": str(params.error_recovery_level), "MaxConnections": str(params.max_connections)}
    for key, result in results.items():
        cells = row(key)
        assert cells[1] == f"`{target[key]}`" and cells[2] == f"`{INITIATOR_OFFER[key]}`", cells
        assert cells[3] == result, cells
    assert params.initiator_max_recv == params.target_max_recv == 262144
    cells = row("DefaultTime2Wait / DefaultTime2Retain")
    assert cells[1] == f"`{target['DefaultTime2Wait']}` / `{target['DefaultTime2Retain']}`"
    assert cells[2] == f"`{INITIATOR_OFFER['DefaultTime2Wait']}` / `{INITIATOR_OFFER['DefaultTime2Retain']}`"
    assert cells[3] == f"{params.time2wait} / {params.time2retain}"
    assert row("HeaderDigest / DataDigest")[1] == f"`{target['HeaderDigest']}`"
