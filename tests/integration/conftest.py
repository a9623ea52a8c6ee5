from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

import pytest

from drive_daemon.sockets import SocketMode
from lab.cluster import Lab, LabPlan
from lab.netlab import can_use_netns
from tests.integration.root import needs_root

POOL = "pool-1"
#: Set inside the namespace a ``netns`` test re-runs in.
IN_PRIVATE_NETNS = "T10K_PRIVATE_NETNS"
#: The longest a test run in its own namespace may take, start-up included.
NETNS_TIMEOUT_S = 300

#: Parametrize a lab test over the drive host's socket modes; shared binds wildcard ports, so it
#: runs in a network namespace of its own (never beside other labs, tgt or the rest of the suite).
BOTH_SOCKET_MODES = pytest.mark.parametrize("drive_sockets", [
    SocketMode.PER_DRIVE, pytest.param(SocketMode.SHARED, marks=[pytest.mark.netns, needs_root])])


@pytest.fixture
def drive_sockets() -> SocketMode:
    """The lab's drive host sockets; BOTH_SOCKET_MODES overrides it."""
    return SocketMode.AUTO


def _outside(item: pytest.Item) -> bool:
    """A ``netns`` test seen from outside its namespace (and root, so one can be made)."""
    return (item.get_closest_marker("netns") is not None and not os.environ.get(IN_PRIVATE_NETNS)
            and can_use_netns())  # not root: needs_root skips it (or fails it in CI)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _outside(item):  # the whole run in the namespace, start-up included
            item.add_marker(pytest.mark.timeout(NETNS_TIMEOUT_S + 30))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """A test marked ``netns`` runs again in a new network namespace (``unshare -n``, loopback up),
    as a pytest of its own, and its result is this test's; its fixtures are set up there only.
    Inside, it runs as any other."""
    if not _outside(item):
        return

    def run() -> None:
        script = 'ip link set lo up && exec "$0" -m pytest -q -p no:cacheprovider "$1"'
        try:
            proc = subprocess.run(["unshare", "-n", "sh", "-c", script, sys.executable, item.nodeid],
                                  cwd=item.config.rootpath, env=os.environ | {IN_PRIVATE_NETNS: "1"},
                                  capture_output=True, text=True, timeout=NETNS_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"{item.nodeid} in its own network namespace: no result after {NETNS_TIMEOUT_S} s\n"
                        f"{exc.stdout or ''}", pytrace=False)
        if proc.returncode != 0:
            pytest.fail(f"{item.nodeid} in its own network namespace (exit {proc.returncode}):\n"
                        f"{proc.stdout[-6000:]}{proc.stderr[-2000:]}", pytrace=False)
        if " passed" not in proc.stdout:
            pytest.fail(f"{item.nodeid} did not run in its namespace:\n{proc.stdout[-3000:]}", pytrace=False)

    # The usual protocol (setup state, reports) with the item's own setup and call replaced.
    item.setup = lambda: None  # type: ignore[method-assign]
    item.runtest = run  # type: ignore[method-assign]


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
async def lab(tmp_path: Path, wire: Wire, drive_sockets: SocketMode) -> AsyncIterator[Lab]:
    async with Lab(tmp_path / "lab", LabPlan(announce_interval_s=0.3, sockets=drive_sockets), tap=wire) as running:
        yield running


async def enrol_and_arm(lab: Lab, *, tokens: tuple[str, ...] = ("token-A",)) -> bytes:
    """EKT to every drive, one key in key set KS1 mapped to POOL, OKT written; returns the key ID."""
    return await lab.arm(POOL, tokens=tokens)
