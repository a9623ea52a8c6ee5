"""Rewrite the generated part of docs/PROTOCOL.md from the construct catalogue.

    python docs/gen_protocol_tables.py
"""

from __future__ import annotations

from pathlib import Path

from protocol.docgen import render_catalogue, render_scsi_sense, render_sense_profiles

HERE = Path(__file__).parent
GENERATED = [
    (HERE / "PROTOCOL.md", "catalogue", render_catalogue),
    (HERE / "SENSE.md", "sense", render_sense_profiles),
    (HERE / "SCSI.md", "scsi-sense", render_scsi_sense),
]


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin (generated: python docs/gen_protocol_tables.py) -->", f"<!-- {name}:end -->"


def main() -> None:
    for doc, name, render in GENERATED:
        begin, end = markers(name)
        head, rest = doc.read_text().split(begin, 1)
        _, tail = rest.split(end, 1)
        doc.write_text(head + begin + "\n\n" + render() + "\n" + end + tail)
        print(f"updated {doc}")


if __name__ == "__main__":
    main()
