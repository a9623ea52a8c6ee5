"""Protocol version 3 on the drive LAN (issue 13, findings 5-7), sans-I/O.

What a drive acts on is authenticated end to end by the KMS: signed announcements, packages
bound as a whole; NO_PACKAGE only delays, for a bound. Live-daemon versions of the attacks
are in tests/attacks/test_lan_forgery.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

import protocol as p
from drive_daemon import drive as dr
from drive_daemon.nvram import Nvram
from protocol.constants import (
    MAX_PULL_SOURCES,
    NO_PACKAGE_SKIP_S,
    EncryptionLed,
    KeyKind,
    MessageType,
    NoPackageReason,
    TokenMode,
)
from tests.site import TOKEN_A, Site, arm, make_site

TOKEN_PORT = (TOKEN_A, 7011)


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def _forged_offer(mode: TokenMode, timestamp: int, csns: list[bytes]) -> p.Frame:
    """What an attacker can send: any fields, a signature it cannot make."""
    offer = p.KeysAvailable(b"\x66" * 8, mode, timestamp, len(csns), p.CsnFilter.of(csns), b"\x00" * 64)
    return p.decode(p.encode(offer))


def _offered(site: Site, i: int) -> dr.Drive:
    """Write the next OKT and hand drive i its announcement, without running the LAN."""
    site.write_okt()
    drive = site.drive(i)
    drive.receive(p.decode(site.lan.tokens[TOKEN_A].announcement().data), TOKEN_PORT, site.lan.now)  # type: ignore[union-attr]
    return drive  # type: ignore[no-any-return]


def _served(site: Site, kind: MessageType, i: int) -> p.Frame:
    (_, t), *_ = [(s, t) for s, t in site.lan.sent(kind) if t.to[0] == site.ip(i)][-1:]
    return p.decode(t.data)


def test_a_device_key_package_brings_the_kms_public_key_and_a_reset_drops_it(site: Site) -> None:
    site.write_ekt()
    site.lan.run()
    drive = site.drive(0)
    assert drive.nvram.kms_public_key == site.kms.kms_public_key()
    image = drive.nvram.to_json(drive.csn, site.made[0].pckey)
    assert site.kms.kms_public_key().hex() not in json.dumps(image)  # sealed with the device key
    assert Nvram.from_json(image, drive.csn, site.made[0].pckey) == drive.nvram
    drive.vop_reset()
    assert drive.nvram.kms_public_key is None and drive.nvram.device_key is None


def test_a_version_2_nvram_is_read_without_a_public_key(site: Site) -> None:
    """Format 1 sealed the device key alone: the drive keeps it and takes offers as hints until its next EKT."""
    site.write_ekt()
    site.lan.run()
    drive, pckey = site.drive(0), site.made[0].pckey
    old = dataclasses.replace(drive.nvram, kms_public_key=None)
    image = old.to_json(drive.csn, pckey) | {"format": 1}
    back = Nvram.from_json(image, drive.csn, pckey)
    assert back.device_key == drive.nvram.device_key and back.kms_public_key is None


def test_a_forged_announcement_is_dropped_and_counted_never_scheduled(site: Site) -> None:
    """Finding 6: timestamp 2**63 held every drive unarmed; now it does not verify."""
    key = arm(site)
    drive = site.drive(0)
    for mode in (TokenMode.OKT, TokenMode.EKT):
        out = drive.receive(_forged_offer(mode, 2**63, [drive.csn]), TOKEN_PORT, site.lan.now)
        assert out.sends == [] and [type(e) for e in out.events] == [dr.AnnouncementRejected]
        assert drive.next_deadline() is None
    # the real next mapping still arms every drive
    new = site.map_new_key()
    site.write_okt()
    site.lan.run()
    for i in range(3):
        media = site.drive(i).media
        assert media is not None and media.write_key_id == new and key in media.keys


def test_a_signed_announcement_with_another_timestamp_does_not_verify(site: Site) -> None:
    arm(site)
    real = p.decode(site.lan.tokens[TOKEN_A].announcement().data)  # type: ignore[union-attr]
    moved = dataclasses.replace(real.message, timestamp=2**63)
    out = site.drive(1).receive(p.decode(p.encode(moved)), TOKEN_PORT, site.lan.now)
    assert [type(e) for e in out.events] == [dr.AnnouncementRejected]


def test_a_factory_drive_takes_offers_as_hints_that_never_block(site: Site) -> None:
    """Without the KMS public key nothing can be verified: a forged newest offer only adds a source."""
    for i in range(3):
        forged = _forged_offer(TokenMode.EKT, 2**63, [site.drive(i).csn])
        site.drive(i).receive(forged, ("127.0.0.66", 7011), site.lan.now)
    site.write_ekt()
    site.lan.run()
    for i in range(3):
        s = site.drive(i).vop_status()
        assert (s.led, s.status_fields) == (EncryptionLed.AMBER, ("Encryption", "Need OKT"))
        assert s.device_key_timestamp < 2**63


def test_hint_sources_are_bounded(site: Site) -> None:
    drive = site.drive(0)
    for n in range(3 * MAX_PULL_SOURCES):
        drive.receive(_forged_offer(TokenMode.EKT, 2**40 + n, [drive.csn]), (f"127.0.0.{100 + n}", 7011), 1.0)
    assert len(drive._pulls[KeyKind.DEVICE].sources) == MAX_PULL_SOURCES


def test_a_no_package_that_answers_no_request_is_ignored(site: Site) -> None:
    """Finding 5, off the path: a NO_PACKAGE must echo the sequence of the request in flight."""
    arm(site)
    site.map_new_key()
    drive = _offered(site, 0)  # the drive schedules its pull
    forged = p.decode(p.encode(p.NoPackage(drive.csn, KeyKind.MEDIA, NoPackageReason.NOT_HELD), sequence=1, reply=True))
    out = drive.receive(forged, TOKEN_PORT, site.lan.now)
    assert [type(e) for e in out.events] == [dr.Ignored] and drive.next_deadline() is not None
    site.lan.run()
    assert drive.vop_status().okt_timestamp == site.kms.mapping("P").timestamp


def test_a_real_package_after_a_forged_no_package_is_still_accepted(site: Site) -> None:
    """Finding 5, on the path: the forged answer wins the race; the real package still arms."""
    arm(site)
    new = site.map_new_key()
    okt = site.kms.mapping("P")
    drive = _offered(site, 0)
    due = drive.next_deadline()
    assert due is not None
    request = drive.tick(due).sends[0]
    req = p.decode(request.data)
    forged = p.encode(p.NoPackage(drive.csn, KeyKind.MEDIA, NoPackageReason.NOT_HELD), sequence=req.sequence, reply=True)
    drive.receive(p.decode(forged), TOKEN_PORT, due)
    assert drive.next_deadline() is None  # that token is out of this pull...
    real = site.lan.tokens[TOKEN_A].receive_lan(req, (site.ip(0), 7012), int(due * 1e6)).sends[0]
    out = drive.receive(p.decode(real.data), TOKEN_PORT, due)  # ...but its package is authentic
    assert [type(e) for e in out.events] == [dr.MediaKeysAccepted]
    assert drive.media is not None and drive.media.write_key_id == new and drive.nvram.okt_timestamp == okt.timestamp
    assert [t.message_type for t in out.sends] == [MessageType.KEY_ACK]


def test_a_no_package_skip_lasts_a_bounded_time(site: Site) -> None:
    arm(site)
    site.map_new_key()
    drive = _offered(site, 0)
    due = drive.next_deadline()
    req = p.decode(drive.tick(due).sends[0].data)  # type: ignore[arg-type]
    forged = p.encode(p.NoPackage(drive.csn, KeyKind.MEDIA, NoPackageReason.NOT_HELD), sequence=req.sequence, reply=True)
    drive.receive(p.decode(forged), TOKEN_PORT, due)  # type: ignore[arg-type]
    offer = p.decode(site.lan.tokens[TOKEN_A].announcement().data)  # type: ignore[union-attr]
    drive.receive(offer, TOKEN_PORT, due + 1)  # type: ignore[operator]
    assert drive.next_deadline() is None  # skipped for now
    out = drive.receive(offer, TOKEN_PORT, due + NO_PACKAGE_SKIP_S + 1)  # type: ignore[operator]
    assert [type(e) for e in out.events] == [dr.PullScheduled]  # never for good


def test_an_unsolicited_authentic_newer_package_is_accepted(site: Site) -> None:
    arm(site)
    new = site.map_new_key()
    site.write_okt()
    site.lan.run()
    drive = site.drive(2)
    served = _served(site, MessageType.MEDIA_KEY_PACKAGE, 2)
    drive.power_cycle()  # media keys gone; the same mapping is welcome again
    out = drive.receive(served, TOKEN_PORT, site.lan.now)
    assert [type(e) for e in out.events] == [dr.MediaKeysAccepted] and drive.media.write_key_id == new  # type: ignore[union-attr]


def _tampered(pkg: p.MediaKeyPackage, write_key_id: bytes) -> p.MediaKeyPackage:
    """Finding 7: the write key ID changed to a read key, and the old write key removed."""
    kept = tuple(k for k in pkg.media_keys if k.key_id != pkg.write_key_id)
    return dataclasses.replace(pkg, write_key_id=write_key_id, media_keys=kept)


def test_a_package_with_its_write_key_changed_and_a_key_removed_is_refused(site: Site) -> None:
    old = arm(site)
    site.map_new_key()  # the mapping: old (read) and new (write)
    site.write_okt()
    drive = site.drive(0)
    token = site.lan.tokens[TOKEN_A]
    req = p.decode(p.encode(p.KeyRequest(drive.csn, KeyKind.MEDIA, 0), sequence=5))
    real = p.decode(token.receive_lan(req, ("127.0.0.66", 7012), 1).sends[0].data).message
    forged = p.decode(p.encode(_tampered(real, old)))  # type: ignore[arg-type]
    drive.power_cycle()
    out = drive.receive(forged, TOKEN_PORT, site.lan.now)
    # unsolicited: dropped without a word (no error report to reflect)
    assert out.sends == [] and not out.persist and [type(e) for e in out.events] == [dr.PackageDropped]
    assert drive.media is None
    site.lan.announce(TOKEN_A)
    site.lan.run()
    assert drive.media is not None and drive.media.write_key_id == real.write_key_id  # type: ignore[union-attr]


def test_a_verified_offer_replaces_a_pull_built_on_hints(site: Site) -> None:
    """A drive read from a version 2 NVRAM (no public key) takes a forged 2**63 OKT offer as a
    hint; once it holds the key (its next EKT), the hint counts for nothing."""
    arm(site)
    drive = site.drive(0)
    drive.nvram.kms_public_key = None
    drive.receive(_forged_offer(TokenMode.OKT, 2**63, [drive.csn]), ("127.0.0.66", 7011), site.lan.now)
    assert drive._pulls[KeyKind.MEDIA].hint
    drive.nvram.kms_public_key = site.kms.kms_public_key()  # as the next device-key package brings it
    site.map_new_key()
    _offered(site, 0)
    pull = drive._pulls[KeyKind.MEDIA]
    assert (pull.hint, pull.timestamp, pull.sources) == (False, site.kms.mapping("P").timestamp, [TOKEN_A])


def test_the_token_broadcasts_what_the_kms_signed_verbatim_even_after_a_restart(site: Site, tmp_path: Path) -> None:
    from token_daemon.memory import MemoryStore
    from token_daemon.token import Token

    arm(site)
    token = site.lan.tokens[TOKEN_A]
    offer = p.decode(token.announcement().data).message  # type: ignore[union-attr]
    assert p.envelope.verify_announcement(site.kms.kms_public_key(), offer)
    assert offer.csn_count == 3 and all(site.drive(i).csn in offer.csn_filter for i in range(3))
    store = MemoryStore(tmp_path / "token", site.secrets[TOKEN_A])
    store.save(token.memory)
    again = Token(store.load(), site.secrets[TOKEN_A])
    assert again.announcement().data == token.announcement().data  # type: ignore[union-attr]
