"""The seed's appendix and Chapter 3 through SCSI: every cell as CHECK CONDITION with the exact
fixed-format sense bytes (FSC in octets 18-19, the missing key's ID in 20-27)."""

from __future__ import annotations

from pathlib import Path

import pytest

import protocol as p
from drive_daemon.drive import Drive, Output
from protocol import scsi
from protocol.constants import ErrorCode, MessageType, ScsiStatus
from protocol.ids import ZERO_KEY_ID
from protocol.sense import SenseKey, SenseProfile
from tests.scsideck import ScsiDeck
from tests.site import Site, arm, make_site
from tests.tapesite import Deck, new_tape
from tests.unit.test_tape import CASES, EXPECTED, NON_ENCRYPTING_IP, _prepare, _write_tapes

READ_LENGTH = 1 << 20
WRITE_DATA = b"new" * 50


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = make_site(tmp_path)
    arm(s)
    s.lan.drives[NON_ENCRYPTING_IP] = Drive(b"\x20" * 8, bytes(32), encrypting=False)
    return s


def _expected_sense(seed: str, op: str, key_id: bytes) -> bytes:
    sk, code, fsc = seed.split("/")
    information = {"write": len(WRITE_DATA), "wfm": 1, "read": READ_LENGTH, "locate": None}[op]
    return scsi.SenseData(int(sk, 16), int(code[:2], 16), int(code[2:], 16), int(fsc, 16),
                          key_id if seed == "3/2605/6109" else ZERO_KEY_ID, information).build()


@pytest.mark.parametrize(("state", "tape", "op", "at_bot"), CASES,
                         ids=[f"{s}|{t}|{o}|{'BOT' if b else 'mid'}" for s, t, o, b in CASES])
def test_appendix_cell_through_scsi(site: Site, tmp_path: Path, state: str, tape: str, op: str, at_bot: bool) -> None:
    library = tmp_path / "lib"
    _write_tapes(site, library)
    ip = _prepare(site, state)
    deck = ScsiDeck.on(site, ip, library)
    deck.session.load("ENC1" if tape == "encrypted" else "PLN1")
    deck.clear_attention()
    reports_before = len(site.lan.sent(MessageType.ERROR_REPORT))
    deck.session.position = 0 if at_bot else {"write": 5, "wfm": 5, "locate": 1, "read": 3}[op]
    cdb, data = {"write": (scsi.Write6(len(WRITE_DATA)), WRITE_DATA), "wfm": (scsi.WriteFilemarks6(1), None),
                 "locate": (scsi.Locate10(4), None), "read": (scsi.Read6(READ_LENGTH, sili=True), None)}[op]
    expected = EXPECTED[state, tape][op][0 if at_bot else 1]
    outcome = deck(cdb, data)
    key = site.kms.key_ids()[0]
    if expected == "none":
        assert outcome.status == ScsiStatus.GOOD and outcome.sense == b""
    else:
        assert outcome.status == ScsiStatus.CHECK_CONDITION
        assert outcome.sense == _expected_sense(expected, op, key)
    reports = [p.decode(t.data).message for _, t in site.lan.sent(MessageType.ERROR_REPORT)[reports_before:]]
    relabel = state == "key not found" and tape == "encrypted" and at_bot and op in ("write", "wfm")
    if expected == "3/2605/6109" or relabel:  # the token hears of a missing key: 00006109 and its ID ...
        assert [(r.error_code, r.key_id) for r in reports] == [(ErrorCode.MISSING_KEY, key)]
    else:  # ... media format errors go to the host only
        assert reports == []


def test_missing_key_sense_bytes_written_out(site: Site, tmp_path: Path) -> None:
    """3/2605/6109 octet by octet, as sg_raw shows it, with the key ID the token gets."""
    library = tmp_path / "lib"
    _write_tapes(site, library)
    ip = _prepare(site, "key not found")
    deck = ScsiDeck.on(site, ip, library)
    deck.session.load("ENC1")
    deck.clear_attention()
    outcome = deck(scsi.Read6(0x8000))
    key = site.kms.key_ids()[0]
    assert outcome.sense.hex() == ("f0" "00" "03" "00008000" "14" "00000000" "26" "05" "00" "000000" "6109"
                                   + key.hex())
    assert isinstance(outcome.output, object) and any(t.to[1] == 7011 for t in outcome.output.sends)  # type: ignore[attr-defined]
    # REQUEST SENSE right after returns the same sense (sg_requests)
    assert deck.ok(scsi.RequestSense(252)) == outcome.sense
    assert scsi.SenseData.parse(deck.ok(scsi.RequestSense(252))).sense_key == SenseKey.NO_SENSE


def test_ssc_profile_through_scsi(site: Site, tmp_path: Path) -> None:
    library = tmp_path / "lib"
    _write_tapes(site, library)
    ip = _prepare(site, "key not found")
    deck = ScsiDeck.on(site, ip, library, profile=SenseProfile.SSC)
    deck.session.load("ENC1")
    deck.clear_attention()
    sense = deck.check(scsi.Read6(100, sili=True))
    assert str(sense.seed) == "7/7401/0000" and sense.key_id == site.kms.key_ids()[0]


def test_holding_keys_until_scsi_unload(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    k1 = arm(site)
    deck = ScsiDeck.on(site, site.ip(0), library)
    deck.session.load(new_tape(library, "HOLD"))
    deck.clear_attention()
    k2 = site.map_new_key()
    site.write_okt()
    site.lan.run()
    drive = site.drive(0)
    assert drive.vop_status().status_fields[1] == "Holding Keys"
    deck.ok(scsi.Write6(5), b"held!")
    assert deck.session.cartridge.records[0].key_id == k1  # type: ignore[union-attr]
    deck.ok(scsi.LoadUnload(load=False))
    assert drive.media.write_key_id == k2  # type: ignore[union-attr]
    assert any(type(e).__name__ == "MediaKeysAccepted" for o in deck.outputs for e in o.events)
    sense = deck.check(scsi.TestUnitReady())
    assert (sense.sense_key, sense.asc, sense.ascq) == (SenseKey.NOT_READY, 0x3A, 0)
    deck.ok(scsi.LoadUnload(load=True))
    deck.ok(scsi.Read6(5))


def test_erase_and_relabel_without_the_key_through_scsi(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    k1 = arm(site)
    old = Deck(site, site.ip(0), library)
    for volser in ("OLD1", "OLD2"):
        old("load", new_tape(library, volser))
        old.write_file(b"written under K1")
        old("unload")
    new = site.replace_keys()
    site.write_okt()
    site.lan.run()
    reports = lambda: [p.decode(t.data).message.key_id for _, t in site.lan.sent(MessageType.ERROR_REPORT)]  # noqa: E731
    deck = ScsiDeck.on(site, site.ip(0), library)
    deck.session.load("OLD1")
    deck.clear_attention()
    deck.ok(scsi.Erase6())
    assert len(deck.session.cartridge) == 0 and reports() == [k1]  # type: ignore[arg-type]
    deck.session.unload(Output())
    deck.session.load("OLD2")
    deck.clear_attention()
    deck.ok(scsi.Write6(9), b"new label")
    assert reports() == [k1, k1]
    assert [r.key_id for r in deck.session.cartridge.records] == [new]  # type: ignore[union-attr]
