from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import pytest

from lab.cluster import Lab, LabPlan

POOL = "pool-1"


@dataclass
class Wire:
    """Every datagram and TCP frame the daemons sent or received, as seen at their sockets."""

    records: list[tuple[str, str, tuple[str, int], tuple[str, int], bytes]] = field(default_factory=list)

    def __call__(self, direction: str, transport: str, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.records.append((direction, transport, src, dst, data))

    @property
    def payload(self) -> bytes:
        return b"".join(r[4] for r in self.records)


@pytest.fixture
def wire() -> Wire:
    return Wire()


@pytest.fixture
async def lab(tmp_path: Path, wire: Wire) -> AsyncIterator[Lab]:
    async with Lab(tmp_path / "lab", LabPlan(announce_interval_s=0.3), tap=wire) as running:
        yield running


async def enrol_and_arm(lab: Lab, *, tokens: tuple[str, ...] = ("token-A",)) -> bytes:
    """EKT to every drive, one key in key set KS1 mapped to POOL, OKT written; returns the key ID."""
    return await lab.arm(POOL, tokens=tokens)
