"""Reading and writing manufacturing files (the format itself is in protocol)."""

from __future__ import annotations

import os
from pathlib import Path

from protocol.manufacturing import ManufacturedDrive, format_manufacturing, make_drives, parse_manufacturing

from .errors import ManufacturingFileError

__all__ = ["ManufacturedDrive", "make_drives", "read_manufacturing_file", "write_manufacturing_file", "find_drive"]


def write_manufacturing_file(path: Path, drives: list[ManufacturedDrive], *, force: bool = False) -> None:
    """Owner-only; an existing file (its PCkeys!) is replaced only with ``force``."""
    if not force and os.path.lexists(path):
        raise ManufacturingFileError(f"{path} exists and holds PCkeys: not overwriting it without --force")
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(format_manufacturing(drives))
    os.replace(tmp, path)


def read_manufacturing_file(path: Path) -> list[ManufacturedDrive]:
    try:
        return parse_manufacturing(path.read_text())
    except FileNotFoundError:
        raise ManufacturingFileError(f"manufacturing file {path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise ManufacturingFileError(f"manufacturing file {path}: {exc}") from None


def find_drive(drives: list[ManufacturedDrive], csn: bytes | None, path: Path) -> ManufacturedDrive:
    if csn is None:
        if len(drives) != 1:
            raise ManufacturingFileError(f"{path} holds {len(drives)} drives: say which with --csn")
        return drives[0]
    for d in drives:
        if d.csn == csn:
            return d
    raise ManufacturingFileError(f"{path} has no drive with CSN {csn.hex()}")
