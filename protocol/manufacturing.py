"""The manufacturing record format: the "CD" carrying each drive's CSN and PCkey.

Shared by the KMS (which imports PCkeys from it) and the drives (which read their
own entry), so it lives here; pure text in and out, no file access.
A JSON list: ``[{"csn": "16 hex", "pckey": "64 hex", "model": "T10000A"}, ...]``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from .constants import PCKEY_SIZE
from .ids import parse_csn, parse_hex

ENCRYPTING_MODELS = ("T10000A", "T10000B")
#: The seed's "2G drive": reads and writes plain media only.
NON_ENCRYPTING_MODELS = ("T10000A-2G",)
MODELS = ENCRYPTING_MODELS + NON_ENCRYPTING_MODELS


@dataclass(frozen=True)
class ManufacturedDrive:
    csn: bytes
    pckey: bytes
    model: str = "T10000A"

    @property
    def encrypting(self) -> bool:
        return self.model in ENCRYPTING_MODELS


def make_drives(count: int, *, first_serial: int = 0x5700_0000_0000_0001, model: str = "T10000A") -> list[ManufacturedDrive]:
    """New drives with consecutive CSNs and random PCkeys."""
    return [ManufacturedDrive((first_serial + i).to_bytes(8, "big"), os.urandom(PCKEY_SIZE), model) for i in range(count)]


def format_manufacturing(drives: list[ManufacturedDrive]) -> str:
    return json.dumps([{"csn": d.csn.hex(), "pckey": d.pckey.hex(), "model": d.model} for d in drives], indent=1)


def parse_manufacturing(text: str) -> list[ManufacturedDrive]:
    """Parse a manufacturing record; ValueError says which entry is wrong and how."""
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ValueError("must hold a JSON list of drives")
    drives = []
    for i, e in enumerate(entries):
        try:
            model = str(e.get("model", "T10000A"))
            if model not in MODELS:
                raise ValueError(f"unknown model {model!r} (known: {', '.join(MODELS)})")
            drives.append(ManufacturedDrive(parse_csn(e["csn"]), parse_hex(e["pckey"], PCKEY_SIZE, "a PCkey"), model))
        except KeyError as exc:
            raise ValueError(f"entry {i} lacks {exc}") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise ValueError(f"entry {i}: {exc}") from None
    if len({d.csn for d in drives}) != len(drives):
        raise ValueError("a CSN is listed twice")
    return drives
