"""The seed's appendix, cell by cell, and its Chapter 3 rule, on real cartridges (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

import protocol as p
from drive_daemon.drive import Drive
from drive_daemon.tape import EncryptionState, TapeCheck, TapePosition
from protocol.constants import EncryptionLed, ErrorCode, MessageType, NextBlockStatus, SpaceUnit
from protocol.sense import SenseProfile
from tests.site import TOKEN_B, Site, arm, make_site
from tests.tapesite import Deck, new_tape

NON_ENCRYPTING_IP = "127.0.1.50"

# The appendix, in the seed's notation, for each drive state and tape:
#   op -> (sense at BOT, sense elsewhere). "none" is "No Error Reported".
_NO_KEYS = "4/2681/343c"
EXPECTED: dict[tuple[str, str], dict[str, tuple[str, str]]] = {
    ("no device keys", "encrypted"): {op: (_NO_KEYS, _NO_KEYS) for op in ("write", "wfm", "locate", "read")},
    ("no device keys", "plain"): {op: (_NO_KEYS, _NO_KEYS) for op in ("write", "wfm", "locate", "read")},
    ("no media keys", "encrypted"): {op: (_NO_KEYS, _NO_KEYS) for op in ("write", "wfm", "locate", "read")},
    ("no media keys", "plain"): {op: (_NO_KEYS, _NO_KEYS) for op in ("write", "wfm", "locate", "read")},
    ("non-encrypting", "encrypted"): {"write": ("none", "3/3005/32b9"), "wfm": ("none", "3/3005/32b9"),
                                      "locate": ("3/3002/0000", "3/3002/0000"), "read": ("3/3002/0000", "3/3002/0000")},
    ("non-encrypting", "plain"): {op: ("none", "none") for op in ("write", "wfm", "locate", "read")},
    ("key not found", "encrypted"): {"write": ("none", "3/2605/6109"), "wfm": ("none", "3/2605/6109"),
                                     "locate": ("3/2605/6109", "3/2605/6109"), "read": ("3/2605/6109", "3/2605/6109")},
    ("key not found", "plain"): {"write": ("none", "7/3005/32ba"), "wfm": ("none", "7/3005/32ba"),
                                 "locate": ("none", "none"), "read": ("none", "none")},
    ("media keys", "encrypted"): {op: ("none", "none") for op in ("write", "wfm", "locate", "read")},
    ("media keys", "plain"): {"write": ("none", "7/3005/32ba"), "wfm": ("none", "7/3005/32ba"),
                              "locate": ("none", "none"), "read": ("none", "none")},
}


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = make_site(tmp_path)
    arm(s)
    s.lan.drives[NON_ENCRYPTING_IP] = Drive(b"\x20" * 8, bytes(32), encrypting=False)
    return s


def _write_tapes(site: Site, library: Path) -> None:
    """ENC1 by an armed drive and PLN1 by a non-encrypting one: b0 b1 FM b2 b3."""
    for ip, volser in ((site.ip(0), "ENC1"), (NON_ENCRYPTING_IP, "PLN1")):
        deck = Deck(site, ip, library)
        assert deck.sense("load", new_tape(library, volser)) == "none"
        deck.write_file(b"b0" * 100, b"b1" * 100)
        deck("write", b"b2" * 100)
        deck("write", b"b3" * 100)
        assert deck.sense("unload") == "none"


def _prepare(site: Site, state: str) -> str:
    """Put drive d1 (or the non-encrypting drive) in ``state``; returns its IP."""
    ip = site.ip(1)
    drive = site.lan.drives[ip]
    if state == "no device keys":
        drive.vop_reset()
    elif state == "no media keys":
        drive.power_cycle()
    elif state == "non-encrypting":
        return NON_ENCRYPTING_IP
    elif state == "key not found":  # media keys of another pool, without ENC1's key
        site.kms.create_pool("Q")
        site.kms.add_drive_to_pool("Q", "d1")
        site.map_new_key("Q")
        site.write_okt("Q", token=TOKEN_B)
        site.lan.run()
        assert drive.media is not None and len(drive.media.keys) == 1
    return ip


CASES = [(state, tape, op, at_bot) for (state, tape), ops in EXPECTED.items() for op in ops for at_bot in (True, False)]


@pytest.mark.parametrize(("state", "tape", "op", "at_bot"), CASES,
                         ids=[f"{s}|{t}|{o}|{'BOT' if b else 'mid'}" for s, t, o, b in CASES])
def test_appendix_cell(site: Site, tmp_path: Path, state: str, tape: str, op: str, at_bot: bool) -> None:
    library = tmp_path / "lib"
    _write_tapes(site, library)
    ip = _prepare(site, state)
    deck = Deck(site, ip, library)
    assert deck.sense("load", "ENC1" if tape == "encrypted" else "PLN1") == "none"
    reports_before = len(site.lan.sent(MessageType.ERROR_REPORT))
    deck.session.position = 0 if at_bot else {"write": 5, "wfm": 5, "locate": 1, "read": 3}[op]
    operation, args, kwargs = {"write": ("write", (b"new" * 50,), {}), "wfm": ("write_filemarks", (1,), {}),
                               "locate": ("locate", (4,), {}), "read": ("read_block", (), {"max_length": 1 << 20})}[op]
    expected = EXPECTED[state, tape][op][0 if at_bot else 1]
    assert deck.sense(operation, *args, **kwargs) == expected
    reports = [p.decode(t.data).message for _, t in site.lan.sent(MessageType.ERROR_REPORT)[reports_before:]]
    relabel = state == "key not found" and tape == "encrypted" and at_bot and op in ("write", "wfm")
    if expected == "3/2605/6109" or relabel:  # a missing key goes to the token too (relabel: "similar errors") ...
        assert [(r.error_code, r.key_id) for r in reports] == [(ErrorCode.MISSING_KEY, site.kms.key_ids()[0])]
    else:  # ... media format errors go to the host only
        assert reports == []


def test_every_appendix_cell_is_covered() -> None:
    from drive_daemon.tape import APPENDIX, KeyStatus, Medium, Operation

    assert len(APPENDIX) == len(KeyStatus) * 2 * len(Medium) * len(Operation)
    assert len(CASES) == 10 * 4 * 2


def _rekey(site: Site) -> bytes:
    """Method 1: a new key set with a new write key, beside the old ones; delivered."""
    key = site.map_new_key()
    site.write_okt()
    site.lan.run()
    return key


def _map_only(site: Site, keys: list[bytes]) -> None:
    """Give pool P exactly these keys (each key has its own key set), write key the last."""
    sets = [ks for ks in ("KS1", "KS2", "KS3", "KS4") if site.kms.key_set_members(ks)[0] in keys]
    site.kms.set_mapping("P", sets, keys[-1])
    site.write_okt()
    site.lan.run()


def test_chapter_3_every_key_used_before_that_point(tmp_path: Path) -> None:
    """The seed's table: File1/K1, File2/K2, File3/K3; retrieve FileN needs K1..KN; append File4 needs K1..K4."""
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    keys = [arm(site)]
    deck = Deck(site, site.ip(0), library)
    deck("load", new_tape(library, "CH3"))
    for n in range(3):
        if n:
            keys.append(_rekey(site))
            deck("unload")  # keys that arrived while loaded are committed at unload
            deck("load", "CH3")
            deck.session.position = len(deck.session.cartridge)  # type: ignore[arg-type]
        deck.write_file(f"file{n + 1}".encode() * 1000)
    keys.append(_rekey(site))  # K4, the write key of the append
    k1, k2, k3, k4 = keys
    files = {1: 0, 2: 2, 3: 4}  # first block of each file

    def retrieve(n: int) -> str:
        deck("unload")
        deck("load", "CH3")
        return deck.sense("locate", files[n]) if files[n] else deck.sense("read_block", max_length=1 << 20)

    for n, needed in {1: [k1], 2: [k1, k2], 3: [k1, k2, k3]}.items():
        _map_only(site, needed)
        assert retrieve(n) == "none", f"File{n} with {len(needed)} key(s)"
        for missing in needed[:-1]:
            _map_only(site, [k for k in needed if k != missing])
            assert retrieve(n) == "3/2605/6109"
            assert deck.session.cartridge is not None
    # Append File4 using K4 needs K1, K2, K3 and K4
    _map_only(site, [k1, k2, k3, k4])
    deck("unload")
    deck("load", "CH3")
    assert deck.sense("space", SpaceUnit.FILEMARKS, 3) == "none"
    assert deck.sense("write", b"file4") == "none"
    _map_only(site, [k1, k3, k4])
    deck("unload")
    deck("load", "CH3")
    deck.session.position = 6
    reply = deck("write", b"file4 again")
    assert isinstance(reply, TapeCheck) and deck.text(reply) == "3/2605/6109" and reply.key_id == k2


def test_missing_key_lights_the_token_error_until_it_is_written(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    k1 = arm(site)
    deck = Deck(site, site.ip(0), library)
    deck("load", new_tape(library, "MK1"))
    deck.write_file(b"secret" * 100)
    deck("unload")
    site.kms.create_key_set("Other")
    other = site.kms.create_key()
    site.kms.add_key_to_set("Other", other)
    site.kms.set_mapping("P", ["Other"], other)
    site.write_okt()
    site.lan.run()
    deck("load", "MK1")
    reply = deck("read_block", max_length=1 << 20)
    assert isinstance(reply, TapeCheck) and deck.text(reply) == "3/2605/6109" and reply.key_id == k1
    token = site.lan.tokens[site.lan.sent(MessageType.ERROR_REPORT)[-1][1].to[0]]
    assert token.error_led.name == "FLASHING_RED"
    assert [(e.csn, e.error_code, e.key_id) for e in token.status().errors] == [
        (site.made[0].csn, ErrorCode.MISSING_KEY, k1)]
    site.write_okt()
    assert token.status().errors == ()


def test_erase_and_relabel_without_the_key_succeed_but_tell_the_token(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    k1 = arm(site)
    deck = Deck(site, site.ip(0), library)
    for volser in ("OLD1", "OLD2"):
        deck("load", new_tape(library, volser))
        deck.write_file(b"written under K1")
        deck("unload")
    new = site.replace_keys()  # K1 is no longer mapped
    site.write_okt()
    site.lan.run()

    def token_reports() -> list[bytes]:
        return [p.decode(t.data).message.key_id for _, t in site.lan.sent(MessageType.ERROR_REPORT)]  # type: ignore[union-attr]

    deck("load", "OLD1")
    assert deck.sense("erase") == "none"
    assert len(deck.session.cartridge) == 0 and token_reports() == [k1]  # type: ignore[arg-type]
    deck("unload")
    deck("load", "OLD2")
    assert deck.sense("write", b"new label") == "none"  # relabel from BOT
    assert token_reports() == [k1, k1]
    assert [r.key_id for r in deck.session.cartridge.records] == [new]  # type: ignore[union-attr]


def test_holding_keys_while_loaded(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    k1 = arm(site)
    deck = Deck(site, site.ip(0), library)
    deck("load", new_tape(library, "HOLD"))
    k2 = _rekey(site)
    drive = site.drive(0)
    assert drive.vop_status().status_fields[1] == "Holding Keys"
    deck("write", b"during holding")
    assert drive.led_at(site.lan.now + 0.2) is EncryptionLed.FLASHING_RED  # doing I/O
    assert drive.led_at(site.lan.now + 5) is EncryptionLed.AMBER  # idle
    assert deck.session.cartridge.records[0].key_id == k1  # type: ignore[union-attr]  # old write key still used
    deck("unload")
    assert drive.vop_status().led is EncryptionLed.RED and drive.media.write_key_id == k2  # type: ignore[union-attr]


def test_power_off_loses_media_keys(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    library = tmp_path / "lib"
    arm(site)
    deck = Deck(site, site.ip(0), library)
    deck("load", new_tape(library, "PWR"))
    deck.write_file(b"x")
    site.drive(0).power_cycle()
    deck.session.power_off()
    assert deck.sense("rewind") == "none"
    assert deck.sense("read_block", max_length=100) == _NO_KEYS


def test_ssc_profile_gives_the_74h_codes(site: Site, tmp_path: Path) -> None:
    library = tmp_path / "lib"
    _write_tapes(site, library)
    ip = _prepare(site, "key not found")
    deck = Deck(site, ip, library, SenseProfile.SSC)
    deck("load", "ENC1")
    assert deck.sense("read_block", max_length=1000) == "7/7401/0000"
    site.lan.drives[ip].vop_reset()
    assert deck.sense("read_block", max_length=1000) == "7/7400/0000"


def test_navigation_and_encryption_status(site: Site, tmp_path: Path) -> None:
    library = tmp_path / "lib"
    _write_tapes(site, library)
    deck = Deck(site, site.ip(0), library)
    deck("load", "ENC1")
    status = deck("encryption_status")
    assert isinstance(status, EncryptionState) and status.next_status is NextBlockStatus.ENCRYPTED
    assert deck.sense("space", SpaceUnit.BLOCKS, 3) == "0/0001/0000"  # stopped after the filemark
    assert deck("read_position") == TapePosition(True, "ENC1", 3, 1, False, False, 5)
    assert deck.sense("space", SpaceUnit.FILEMARKS, 1) == "8/0005/0000"  # end of data
    assert deck.sense("space", SpaceUnit.BLOCKS, -9) == "0/0001/0000"  # back to the filemark, BOT side
    assert deck("read_position").block == 2  # type: ignore[union-attr]
    deck.session.position = 1
    assert deck.sense("space", SpaceUnit.BLOCKS, -9) == "0/0004/0000"  # BOT
    deck.session.position = 2
    assert deck("encryption_status").next_status is NextBlockStatus.NOT_A_BLOCK  # type: ignore[union-attr]
    assert deck.sense("read_block", max_length=1000) == "0/0001/0000"  # a filemark
    assert deck("read_block", max_length=1000) == b"b2" * 100
    assert deck.sense("read_block", max_length=10) == "5/2400/0000"  # block larger than asked
    assert deck.sense("locate", 99) == "8/0005/0000"
    site.drive(0).power_cycle()
    deck.session.position = 0
    missing = deck("encryption_status")
    assert missing.next_status is NextBlockStatus.ENCRYPTED_KEY_MISSING  # type: ignore[union-attr]


def test_wrong_state_and_bad_input(site: Site, tmp_path: Path) -> None:
    library = tmp_path / "lib"
    deck = Deck(site, site.ip(0), library)
    assert deck.sense("read_block", max_length=10) == "2/3a00/0000"  # no tape
    assert deck.sense("load", "NOPE") == "5/3b0e/0000"
    deck("load", new_tape(library, "T1"))
    assert deck.sense("load", "T1") == "5/5302/0000"  # already loaded
    other = Deck(site, site.ip(1), library)
    assert other.sense("load", "T1") == "2/0407/0000"  # in use by another drive
