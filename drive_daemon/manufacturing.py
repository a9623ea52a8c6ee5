"""The manufacturing file: the "CD" that carries each drive's CSN and PCkey.

A JSON list of drives, ``[{"csn": "16 hex", "pckey": "64 hex", "model": "T10000A"}]``.
The KMS imports the PCkeys from it; each drive daemon reads its own entry.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from protocol.constants import PCKEY_SIZE
from protocol.ids import parse_csn, parse_hex

from .errors import ManufacturingFileError

ENCRYPTING_MODELS = {"T10000A", "T10000B"}
NON_ENCRYPTING_MODELS = {"T10000A-2G"}


@dataclass(frozen=True)
class ManufacturedDrive:
    csn: bytes
    pckey: bytes
    model: str = "T10000A"

    @property
    def encrypting(self) -> bool:
        return self.model in ENCRYPTING_MODELS


def make_drives(count: int, *, first_serial: int = 0x5700_0000_0000_0001, model: str = "T10000A") -> list[ManufacturedDrive]:
    return [ManufacturedDrive((first_serial + i).to_bytes(8, "big"), os.urandom(PCKEY_SIZE), model) for i in range(count)]


def write_manufacturing_file(path: Path, drives: list[ManufacturedDrive]) -> None:
    path.write_text(json.dumps([{"csn": d.csn.hex(), "pckey": d.pckey.hex(), "model": d.model} for d in drives], indent=1))
    path.chmod(0o600)


def read_manufacturing_file(path: Path) -> list[ManufacturedDrive]:
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise ManufacturingFileError(f"manufacturing file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ManufacturingFileError(f"manufacturing file {path} is not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise ManufacturingFileError(f"manufacturing file {path} must hold a JSON list of drives")
    drives = []
    for i, e in enumerate(entries):
        try:
            model = str(e.get("model", "T10000A"))
            if model not in ENCRYPTING_MODELS | NON_ENCRYPTING_MODELS:
                raise ValueError(f"unknown model {model!r}")
            drives.append(ManufacturedDrive(parse_csn(e["csn"]), parse_hex(e["pckey"], PCKEY_SIZE, "a PCkey"), model))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise ManufacturingFileError(f"manufacturing file {path}, entry {i}: {exc}") from None
    if len({d.csn for d in drives}) != len(drives):
        raise ManufacturingFileError(f"manufacturing file {path} lists a CSN twice")
    return drives


def find_drive(drives: list[ManufacturedDrive], csn: bytes | None, path: Path) -> ManufacturedDrive:
    if csn is None:
        if len(drives) != 1:
            raise ManufacturingFileError(f"{path} holds {len(drives)} drives: say which with --csn")
        return drives[0]
    for d in drives:
        if d.csn == csn:
            return d
    raise ManufacturingFileError(f"{path} has no drive with CSN {csn.hex()}")
