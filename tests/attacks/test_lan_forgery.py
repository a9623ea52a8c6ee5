"""Attacks from the drive LAN on a live lab (issue 13, findings 5, 6, 7), each shown to fail.

One token, four drives, real sockets on loopback (lab/cluster.py); the attacker is a plain
UDP socket bound to the token's own address, so its datagrams come from where the token's
do. Every loop is bounded in count and time. Each test ends with every drive armed with the
right write key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from pathlib import Path
from typing import AsyncIterator

import pytest

import protocol as p
from lab.cluster import Lab, LabPlan
from protocol.constants import DRIVE_PORT, TOKEN_LAN_PORT, EncryptionLed, KeyKind, NoPackageReason, TokenMode

pytestmark = pytest.mark.network

POOL = "pool-1"


class Attacker:
    """A host on the drive LAN that spoofs the token's address (any source port will do)."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.bind((lab.token_ips["token-A"], 0))
        self.sock.setblocking(False)
        self.sent = 0

    def send(self, data: bytes, to: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, to)
            self.sent += 1
        except BlockingIOError:  # a full socket buffer: this one is dropped, as on a real LAN
            pass

    def broadcast(self, data: bytes) -> None:
        self.send(data, (self.lab.net.broadcast, self.lab.net.lan_port))

    def close(self) -> None:
        self.sock.close()


class OnPathNoPackage:
    """A tap standing for a sniffer on the LAN: it answers every KEY_REQUEST it sees with a
    forged NO_PACKAGE echoing the request's sequence, before the token can answer."""

    def __init__(self) -> None:
        self.attacker: Attacker | None = None
        self.forged = 0

    def __call__(self, direction: str, transport: str, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        if self.attacker is None or transport != "udp" or direction != "out" or dst[1] != TOKEN_LAN_PORT:
            return
        try:
            frame = p.decode(data)
        except p.DecodeError:
            return
        if isinstance(frame.message, p.KeyRequest):
            forged = p.NoPackage(frame.message.csn, frame.message.kind, NoPackageReason.DELIVERED)
            self.attacker.send(p.encode(forged, sequence=frame.sequence, reply=True), (src[0], DRIVE_PORT))
            self.forged += 1


@pytest.fixture
def tap() -> OnPathNoPackage:
    return OnPathNoPackage()


@pytest.fixture
async def lab(tmp_path: Path, tap: OnPathNoPackage) -> AsyncIterator[Lab]:
    plan = LabPlan(token_names=("token-A",), drive_count=4, announce_interval_s=0.3)
    async with Lab(tmp_path / "lab", plan, tap=tap) as running:
        yield running


async def _armed_with(lab: Lab, write_key: bytes, timeout_s: float = 15.0) -> None:
    mapping = lab.kms.mapping(POOL)
    statuses = await lab.wait_until(
        lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp and s.write_key_id == write_key,
        "armed with the mapping's write key", timeout_s=timeout_s)
    assert all(s.write_key_id == write_key for s in statuses.values())


async def test_a_forged_no_package_from_the_tokens_address_only_delays(lab: Lab, tap: OnPathNoPackage) -> None:
    """Finding 5: 0 of 4 were armed after 13 s. Off the path (guessed sequences) and on it
    (the right sequence, sent before the token answers), every drive is armed."""
    attacker = Attacker(lab)
    tap.attacker = attacker  # on the path: every KEY_REQUEST gets a forged NO_PACKAGE first
    stop = asyncio.Event()

    async def off_path() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            for csn, ip in zip(lab.drive_csns.values(), lab.drive_ips.values(), strict=True):
                for kind in KeyKind:
                    forged = p.NoPackage(csn, kind, NoPackageReason.NOT_HELD)
                    attacker.send(p.encode(forged, sequence=int.from_bytes(os.urandom(4), "big"), reply=True),
                                  (ip, DRIVE_PORT))
            await asyncio.sleep(0.01)

    flood = asyncio.create_task(off_path())
    try:
        key = await lab.arm(POOL)
        await _armed_with(lab, key)
    finally:
        stop.set()
        await flood
        attacker.close()
    assert tap.forged >= 8  # an EKT and an OKT request per drive were answered by the attacker first
    assert attacker.sent > tap.forged
    assert lab.drives.counters.events["Ignored"] > 0  # the guessed ones answered no request


async def test_a_forged_newest_announcement_at_5_per_second_holds_no_drive(lab: Lab) -> None:
    """Finding 6: KEYS_AVAILABLE with timestamp 2**63 at 5/s held every drive unarmed."""
    attacker = Attacker(lab)
    csns = list(lab.drive_csns.values())
    stop = asyncio.Event()

    async def forge() -> None:
        deadline = time.monotonic() + 30
        while not stop.is_set() and time.monotonic() < deadline:
            for mode in (TokenMode.EKT, TokenMode.OKT):
                offer = p.KeysAvailable(b"\x66" * 8, mode, 2**63, len(csns), p.CsnFilter.of(csns), os.urandom(64))
                attacker.broadcast(p.encode(offer))
            await asyncio.sleep(0.2)

    flood = asyncio.create_task(forge())
    try:
        await asyncio.sleep(0.5)  # factory drives see the forgeries first: hints, they block nothing
        key = await lab.arm(POOL)
        rejected = lab.drives.counters.events["AnnouncementRejected"]
        await asyncio.sleep(1.0)  # armed drives hold the KMS key: every forgery now fails to verify
        assert lab.drives.counters.events["AnnouncementRejected"] > rejected
        new = await lab.map_new_key(POOL, "KS2", keep=("KS1",))  # the next real OKT arms every drive too
        await _armed_with(lab, new)
    finally:
        stop.set()
        await flood
        attacker.close()
    assert key != new and attacker.sent >= 10


async def test_a_package_with_its_write_key_changed_and_a_key_removed_is_refused(lab: Lab) -> None:
    """Finding 7: new tapes got written under what the mapping made a read key."""
    old = await lab.arm(POOL)
    attacker = Attacker(lab)
    kms = lab.kms
    new = kms.create_key()
    kms.create_key_set("KS2")
    kms.add_key_to_set("KS2", new)
    kms.set_mapping(POOL, ["KS1", "KS2"], new)
    # What the drive LAN will carry for each drive: the real packages of the next OKT (an
    # attacker gets them by sending KEY_REQUEST to the token); changed before the token has them.
    from kms_client.builders import build_okt

    okt = build_okt(kms, POOL)
    for entry in okt.entries:
        pkg = entry.package
        kept = tuple(k for k in pkg.media_keys if k.key_id != new)
        forged = dataclasses.replace(pkg, write_key_id=old, media_keys=kept)
        ip = next(ip for name, ip in lab.drive_ips.items() if lab.drive_csns[name] == pkg.csn)
        for _ in range(3):
            attacker.send(p.encode(forged), (ip, DRIVE_PORT))
    await asyncio.sleep(0.5)
    for status in (await lab.vop_all()).values():
        assert status.write_key_id == old and status.okt_timestamp < kms.mapping(POOL).timestamp
    assert lab.drives.counters.events["PackageDropped"] >= 4
    assert lab.drives.counters.events.get("DecryptionFailed", 0) == 0  # dropped in silence: no report
    errors = lab.tokens["token-A"].token.status().errors
    assert errors == ()
    attacker.close()
    from kms_client import station

    await station.write_okt(kms, "token-A", POOL)  # the real one
    await _armed_with(lab, new)
    for name in lab.drive_names:
        media = lab.drives.drives[lab.drive_csns[name]].drive.media
        assert media is not None and set(media.keys) == {old, new}
