"""Real clients in a QEMU guest: the image is built (or found in the cache) once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from lab.addresses import free_net
from lab.guest.build import GuestImage, ensure_image
from lab.tgt import TgtTape

NET = free_net()  # beside any lab, the README's daemons included
TGT_IP = NET.host(1)


@pytest.fixture(scope="session")
def guest_image() -> GuestImage:
    return ensure_image()


@pytest.fixture
def tgt(tmp_path: Path) -> Iterator[TgtTape]:
    with TgtTape(tmp_path, TGT_IP) as target:  # stopped by tgtadm, then PID, even when the test fails
        yield target
