"""docs/PROTOCOL.md carries the catalogue as generated from the layouts: no drift."""

from __future__ import annotations

from pathlib import Path

from protocol.docgen import render_catalogue, render_scsi_sense, render_sense_profiles
from protocol.constants import MessageType

DOC = Path(__file__).resolve().parents[1] / "docs" / "PROTOCOL.md"


def test_protocol_document_matches_the_catalogue() -> None:
    text = DOC.read_text()
    assert render_catalogue() in text, "run: python docs/gen_protocol_tables.py"
    for mt in MessageType:
        assert f"### {mt.name} (0x{int(mt):02X})" in text


def test_sense_document_matches_the_profiles() -> None:
    text = (DOC.parent / "SENSE.md").read_text()
    assert render_sense_profiles() in text, "run: python docs/gen_protocol_tables.py"
    assert "`3/2605/6109` | `7/7401/0000`" in text


def test_scsi_document_matches_the_catalogue() -> None:
    """docs/SCSI.md: the sense octets as generated, and every command of the catalogue listed."""
    from protocol.constants import ScsiOp

    text = (DOC.parent / "SCSI.md").read_text()
    assert render_scsi_sense() in text, "run: python docs/gen_protocol_tables.py"
    for op in ScsiOp:
        assert f"| {int(op):02X}h" in text, f"{op.name} is not in docs/SCSI.md"
