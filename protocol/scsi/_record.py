"""One declaration per layout: a frozen dataclass whose fields are read from its construct Struct.

A record class sets ``STRUCT``; its dataclass fields carry the same names. ``build()`` and
``parse()`` move between bytes and the dataclass, so no construct ``Container`` leaks out.
Fields of the Struct that the dataclass does not name (reserved octets, the CDB's control
octet) take their ``Default`` when built and are dropped when parsed.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

from construct import Construct, ConstructError

from ..errors import ProtocolError

R = TypeVar("R", bound="Record")


class ScsiFormatError(ProtocolError):
    """Bytes that are not the SCSI structure asked for (a short CDB, a truncated page...)."""


class Record:
    STRUCT: ClassVar[Construct]

    def build(self) -> bytes:
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return self.STRUCT.build(values)

    @classmethod
    def parse(cls: type[R], data: bytes | bytearray | memoryview) -> R:
        try:
            c = cls.STRUCT.parse(bytes(data))
        except ConstructError as exc:
            raise ScsiFormatError(f"not a valid {cls.__name__}: {exc}") from None
        return cls(**{f.name: c[f.name] for f in dataclasses.fields(cls)})  # type: ignore[arg-type]

    @classmethod
    def size(cls) -> int:
        return int(cls.STRUCT.sizeof())
