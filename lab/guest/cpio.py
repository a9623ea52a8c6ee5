"""A writer of cpio "newc" archives, the format Linux unpacks as an initramfs.

Written here rather than driving the cpio tool so that owners, modes and times are set
exactly (root-owned files without root, reproducible bytes) and so that a per-run archive
(the script to run) is built in memory and appended to the cached image.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass
class CpioWriter:
    """Collects entries; ``bytes()`` gives the archive with its trailer."""

    _parts: list[bytes] = field(default_factory=list)
    _ino: int = 1
    _names: set[str] = field(default_factory=set)

    def _entry(self, name: str, mode: int, data: bytes = b"", nlink: int = 1) -> None:
        name = name.lstrip("/")
        if name in self._names:
            return
        self._names.add(name)
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(encoded), 0)
        header = _MAGIC + b"".join(f"{v:08X}".encode() for v in fields)
        self._ino += 1
        self._parts.append(_pad(header + encoded) + _pad(data))

    def directory(self, name: str, mode: int = 0o755) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), stat.S_IFDIR | mode, nlink=2)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(name)
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self._parents(name)
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def __contains__(self, name: str) -> bool:
        return name.lstrip("/") in self._names

    def _parents(self, name: str) -> None:
        parent = name.strip("/").rpartition("/")[0]
        if parent:
            self.directory(parent)

    def __bytes__(self) -> bytes:
        trailer = _MAGIC + b"".join(f"{v:08X}".encode() for v in (0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, len(_TRAILER) + 1, 0))
        return b"".join(self._parts) + _pad(trailer + _TRAILER.encode() + b"\0")


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % 4)
