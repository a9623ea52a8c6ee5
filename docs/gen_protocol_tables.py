"""Rewrite the generated part of docs/PROTOCOL.md from the construct catalogue.

    python docs/gen_protocol_tables.py
"""

from __future__ import annotations

from pathlib import Path

from protocol.docgen import render_catalogue

BEGIN, END = "<!-- catalogue:begin (generated: python docs/gen_protocol_tables.py) -->", "<!-- catalogue:end -->"
DOC = Path(__file__).with_name("PROTOCOL.md")


def main() -> None:
    text = DOC.read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + BEGIN + "\n\n" + render_catalogue() + "\n" + END + tail)
    print(f"updated {DOC}")


if __name__ == "__main__":
    main()
