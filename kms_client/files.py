"""Files the KMS hands out that hold keys or secrets: owner-only, whole or absent, never
over an existing file unless the operator says --force."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import StoreError


class FileExists(StoreError):
    """A file that may hold keys is in the way: the operator must say --force to replace it."""


def refuse_existing(path: Path, *, force: bool, what: str) -> None:
    if not force and os.path.lexists(path):
        raise FileExists(f"{path} exists and may hold keys: not overwriting {what} without --force")


def write_key_file(path: Path, data: bytes, *, force: bool, what: str) -> None:
    """Write ``data`` to ``path`` (0600) atomically: a crash leaves the old file or the new one."""
    path = Path(path)
    refuse_existing(path, force=force, what=what)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if force:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file appeared meanwhile: never a silent overwrite
    except FileExistsError:
        raise FileExists(f"{path} exists and may hold keys: not overwriting {what} without --force") from None
    finally:
        if tmp.exists():
            tmp.unlink()
