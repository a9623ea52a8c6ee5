"""The Drive state machine: the seed's rules on timestamps, holding keys, errors and resets."""

from __future__ import annotations

from pathlib import Path

import pytest

import protocol as p
from drive_daemon import drive as dr
from drive_daemon.nvram import Nvram
from protocol.constants import (
    MAX_PULL_ATTEMPTS,
    RETRY_AFTER_SPREADS,
    RETRY_BACKOFF,
    RETRY_BASE_S,
    RETRY_MAX_S,
    EncryptionLed,
    ErrorCode,
    KeyKind,
    MessageType,
    TokenMode,
)
from tests.site import TOKEN_A, TOKEN_B, Site, arm, arm_pool, make_site


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


def events(site: Site, kind: type) -> list[object]:
    return [e for _, e in site.lan.drive_events if isinstance(e, kind)]


def test_a_new_drive_is_green_and_needs_nothing_yet(site: Site) -> None:
    status = site.drive(0).vop_status()
    assert status.led is EncryptionLed.GREEN
    assert status.status_fields == ("", "") and not status.encryption_enabled


def test_ekt_enables_then_okt_arms(site: Site) -> None:
    site.write_ekt()
    site.lan.run()
    for i in range(3):
        s = site.drive(i).vop_status()
        assert (s.led, s.status_fields) == (EncryptionLed.AMBER, ("Encryption", "Need OKT"))
    key = arm_pool(site)
    mapping = site.kms.mapping("P")
    for i in range(3):
        s = site.drive(i).vop_status()
        assert s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp
        assert (s.media_key_count, s.write_key_id) == (1, key)
        assert site.drive(i).media is not None and site.drive(i).media.keys[key] == site.kms.key_value(key)


def test_pulls_are_spread_and_answered_once_each(site: Site) -> None:
    site.write_ekt()
    site.lan.run()
    requests = site.lan.sent(MessageType.KEY_REQUEST)
    assert len(requests) == 3 and len({s for s, _ in requests}) == 3
    dues = [e.due for e in events(site, dr.PullScheduled)]  # type: ignore[attr-defined]
    assert len(set(dues)) == 3  # each drive drew its own delay


def test_an_older_mapping_is_refused_silently(site: Site) -> None:
    arm(site)
    old = site.kms.mapping("P").timestamp
    site.write_okt(token=TOKEN_B)  # B holds the same, current mapping
    site.kms.apply_mapping("P")
    site.write_okt()  # A gets the newer timestamp
    site.lan.run()
    new = site.kms.mapping("P").timestamp
    site.lan.announce(TOKEN_B)  # B still offers the old one
    before = len(site.lan.wire)
    site.lan.run()
    assert all(site.drive(i).vop_status().okt_timestamp == new for i in range(3))
    refused = events(site, dr.OfferRefused)
    assert {(e.offered, e.held) for e in refused[-3:]} == {(old, new)}  # type: ignore[attr-defined]
    # "drive sends no error message to the token in this circumstance"
    assert [t for _, t in site.lan.wire[before:] if t.message_type is not MessageType.KEYS_AVAILABLE] == []


def test_power_cycle_loses_media_keys_and_the_same_okt_rearms(site: Site) -> None:
    arm(site)
    drive = site.drive(0)
    drive.power_cycle()
    s = drive.vop_status()
    assert (s.led, s.need_okt, s.media_key_count) == (EncryptionLed.AMBER, True, 0)
    assert s.okt_timestamp == site.kms.mapping("P").timestamp  # non-volatile
    site.lan.announce(TOKEN_A)
    site.lan.run()
    assert drive.vop_status().led is EncryptionLed.RED


def test_after_a_power_cycle_only_an_outdated_token_leaves_the_drive_needing_an_okt(site: Site) -> None:
    arm(site)
    site.write_okt(token=TOKEN_B)
    site.kms.apply_mapping("P")
    site.write_okt()
    site.lan.run()
    site.drive(0).power_cycle()
    site.lan.announce(TOKEN_B)
    site.lan.run()
    s = site.drive(0).vop_status()
    assert (s.led, s.status_fields) == (EncryptionLed.AMBER, ("Encryption", "Need OKT"))


def test_a_replayed_package_is_refused_by_a_drive_that_holds_its_timestamp(site: Site) -> None:
    arm(site)
    drive = site.drive(0)
    (_, served), = [(s, t) for s, t in site.lan.sent(MessageType.MEDIA_KEY_PACKAGE) if t.to[0] == site.ip(0)][:1]
    # the drive asks again as if for a new offer, then gets the old package replayed
    offer = p.decode(site.lan.tokens[TOKEN_A].announcement().data)  # type: ignore[union-attr]
    drive.receive(offer, (TOKEN_A, 7011), site.lan.now)
    assert drive.next_deadline() is None  # holding that timestamp, it does not even pull
    out = drive.receive(p.decode(served.data), (TOKEN_A, 7011), site.lan.now)
    assert not out.persist and not out.sends and isinstance(out.events[0], dr.PackageDropped)


def test_keys_arriving_with_a_tape_loaded_are_held_until_unload(site: Site) -> None:
    arm(site)
    drive = site.drive(0)
    drive.load_tape()
    new_key = site.map_new_key()
    site.write_okt()
    site.lan.run()
    s = drive.vop_status()
    assert (s.holding_keys, s.led, s.status_fields[1]) == (True, EncryptionLed.AMBER, "Holding Keys")
    assert new_key not in drive.media.keys  # type: ignore[union-attr]
    drive.unload_tape()
    s = drive.vop_status()
    assert (s.holding_keys, s.led, s.media_key_count) == (False, EncryptionLed.RED, 2)


def test_scenario_5_new_device_keys_are_held_until_newer_media_keys(site: Site) -> None:
    arm(site)
    site.write_ekt(use_pckey=False)  # new device keys, wrapped under the current ones
    site.lan.run()
    drive = site.drive(0)
    s = drive.vop_status()
    assert (s.holding_keys, s.led, s.status_fields[1]) == (True, EncryptionLed.AMBER, "Holding Keys")
    site.write_okt()  # mapping unchanged: its timestamp predates the device keys
    site.lan.run()
    assert drive.vop_status().holding_keys
    assert events(site, dr.OfferRefused)[-1].kind is KeyKind.MEDIA  # type: ignore[attr-defined]
    # Even a drive that lost its media keys refuses media keys older than its device keys.
    site.drive(1).power_cycle()
    site.lan.announce(TOKEN_A)
    site.lan.run()
    assert site.drive(1).vop_status().status_fields == ("Encryption", "Need OKT")
    site.kms.apply_mapping("P")  # the seed's recovery: Apply, then write the OKT
    site.write_okt()
    site.lan.run()
    s = drive.vop_status()
    assert (s.holding_keys, s.led) == (False, EncryptionLed.RED)


def test_scenario_4_pckey_package_to_an_enabled_drive_is_a_decryption_error(site: Site) -> None:
    arm(site)
    site.write_ekt(["d0"], use_pckey=True)
    site.lan.run()
    report = p.decode(site.lan.sent(MessageType.ERROR_REPORT)[-1][1].data).message
    assert isinstance(report, p.ErrorReport) and report.error_code is ErrorCode.KEY_MESSAGE_DECRYPTION
    token = site.lan.tokens[TOKEN_A]
    assert token.error_led.name == "FLASHING_RED" and token.status().errors[0].csn == site.made[0].csn
    assert site.drive(0).vop_status().led is EncryptionLed.RED  # keeps working with what it has


def test_scenario_1_device_keys_written_twice_then_reset_and_use_pckey(site: Site) -> None:
    arm(site)
    site.kms.new_device_keys(["d0"], via_pckey=False)  # first EKT written but never delivered
    site.write_ekt(["d0"], use_pckey=False)  # second EKT: wrapped under the undelivered keys
    site.lan.run()
    drive = site.drive(0)
    assert events(site, dr.DecryptionFailed) and drive.vop_status().led is EncryptionLed.RED
    site.lan.press_reset(TOKEN_A)  # the token holds an authorisation under the key the drive has
    site.lan.run()
    s = drive.vop_status()
    assert (s.led, s.status_fields[0], s.encryption_enabled) == (EncryptionLed.FLASHING_GREEN, "==RESET==", False)
    assert drive.media is None
    site.write_ekt(["d0"], use_pckey=True)
    site.lan.run()
    assert drive.vop_status().led is EncryptionLed.AMBER
    site.kms.apply_mapping("P")
    site.write_okt()
    site.lan.run()
    assert drive.vop_status().led is EncryptionLed.RED


def test_media_keys_under_device_keys_the_drive_lacks_are_reported(site: Site) -> None:
    # Scenario 2: new EKT written but not delivered, then an OKT made with the new keys.
    arm(site)
    site.kms.new_device_keys(site.names, via_pckey=False)
    site.kms.apply_mapping("P")
    site.write_okt()
    site.lan.run()
    reports = [p.decode(t.data).message for _, t in site.lan.sent(MessageType.ERROR_REPORT)]
    assert len(reports) == 3 and {r.error_code for r in reports} == {ErrorCode.KEY_MESSAGE_DECRYPTION}  # type: ignore[union-attr]
    # a failed offer is not pulled again at every re-announce
    site.lan.announce(TOKEN_A)
    site.lan.run()
    assert len(site.lan.sent(MessageType.ERROR_REPORT)) == 3


def test_clear_keys_resets_only_the_drives_it_authorises(site: Site) -> None:
    arm(site)
    site.write_ekt(["d0", "d1"], use_pckey=False, token=TOKEN_B)
    site.lan.run()
    site.lan.press_reset(TOKEN_B)
    site.lan.run()
    assert [site.drive(i).vop_status().reset for i in range(3)] == [True, True, False]
    assert site.drive(2).vop_status().led is EncryptionLed.RED


def test_a_forged_clear_keys_is_refused(site: Site) -> None:
    arm(site)
    drive = site.drive(0)
    forged = p.ClearKeys(b"\x00" * 8, 0, 1, (p.ClearAuthorization(drive.csn, drive.nvram.device_key_id, bytes(16)),))
    out = drive.receive(p.decode(p.encode(forged)), ("127.0.0.66", 7011), site.lan.now)
    assert isinstance(out.events[0], dr.ClearRefused) and not out.persist
    assert drive.vop_status().led is EncryptionLed.RED


def test_a_lost_request_is_retried_with_backoff_then_abandoned(site: Site) -> None:
    sent_at: list[float] = []

    def lose_requests(sender: str, t: p.Transmit) -> bool:
        if t.message_type is MessageType.KEY_REQUEST and sender == site.ip(0):
            sent_at.append(site.lan.now)
        return t.message_type is MessageType.KEY_REQUEST

    site.lan.drop = lose_requests
    site.write_ekt(["d0"])
    site.lan.run()
    assert len(sent_at) == MAX_PULL_ATTEMPTS
    assert events(site, dr.PullGaveUp)
    first = RETRY_AFTER_SPREADS * dr.pull_spread(1) + RETRY_BASE_S  # the first retry waits for the whole spread window
    for attempt, (before, after) in enumerate(zip(sent_at, sent_at[1:], strict=False), start=1):
        nominal = min(RETRY_MAX_S, first * RETRY_BACKOFF ** (attempt - 1))  # then x RETRY_BACKOFF, capped, x[1, 1.5)
        assert nominal <= after - before < 1.5 * nominal
    site.lan.drop = lambda sender, t: False
    site.lan.announce(TOKEN_A)  # the next announce brings it in
    site.lan.run()
    assert site.drive(0).vop_status().encryption_enabled


def test_a_lost_ack_is_sent_again_at_the_next_announce(site: Site) -> None:
    site.lan.drop = lambda sender, t: t.message_type is MessageType.KEY_ACK
    site.write_ekt(["d0"])
    site.lan.run()
    assert site.lan.tokens[TOKEN_A].status().packages_held == 1
    site.lan.drop = lambda sender, t: False
    acks = len(site.lan.sent(MessageType.KEY_ACK))
    site.lan.announce(TOKEN_A)  # a repeat of the write's announcement, right after the ACK: not yet
    site.lan.run()
    assert len(site.lan.sent(MessageType.KEY_ACK)) == acks
    site.lan.now += dr.ACK_AGAIN_S
    site.lan.announce(TOKEN_A)
    site.lan.run()
    assert site.lan.tokens[TOKEN_A].status().packages_held == 0


def test_redundant_tokens_with_the_same_mapping_serve_one_pull(site: Site) -> None:
    arm(site)
    site.write_okt(token=TOKEN_B)
    for i in range(3):
        site.drive(i).power_cycle()
    site.lan.announce(TOKEN_A)
    site.lan.announce(TOKEN_B)
    before = len(site.lan.sent(MessageType.KEY_REQUEST))
    site.lan.run()
    assert len(site.lan.sent(MessageType.KEY_REQUEST)) - before == 3
    assert all(site.drive(i).vop_status().led is EncryptionLed.RED for i in range(3))


def test_non_member_drives_do_not_pull(tmp_path: Path) -> None:
    site = make_site(tmp_path, drive_count=3)
    site.write_ekt(["d0"])
    site.lan.run()
    assert {s for s, _ in site.lan.sent(MessageType.KEY_REQUEST)} == {site.ip(0)}


def test_a_non_encrypting_drive_ignores_keys(site: Site) -> None:
    drive = dr.Drive(b"\x01" * 8, bytes(32), encrypting=False)
    offer = p.KeysAvailable(b"\x00" * 8, TokenMode.EKT, 5, 1, p.CsnFilter.of([b"\x01" * 8]), bytes(64))
    out = drive.receive(p.decode(p.encode(offer)), (TOKEN_A, 7011), 1.0)
    assert out.sends == [] and drive.next_deadline() is None


def test_nvram_round_trip_keeps_the_device_key_sealed(site: Site) -> None:
    arm(site)
    drive = site.drive(0)
    image = drive.nvram.to_json(drive.csn, site.made[0].pckey)
    assert drive.nvram.device_key.hex() not in str(image)  # type: ignore[union-attr]
    assert Nvram.from_json(image, drive.csn, site.made[0].pckey) == drive.nvram


def test_no_plaintext_key_on_the_in_memory_wire(site: Site) -> None:
    arm(site)
    site.write_ekt(use_pckey=False)
    site.lan.run()
    secrets = [site.kms.key_value(k) for k in site.kms.key_ids()]
    secrets += [k for n in site.names for _, k in site.kms.device_keys(n, 5)] + [m.pckey for m in site.made]
    wire = b"".join(t.data for _, t in site.lan.wire)
    assert secrets and not [s for s in secrets if s in wire]



def test_a_write_announced_again_while_it_is_pulled_changes_nothing(site: Site) -> None:
    """A token repeats a write's announcement (ANNOUNCE_REPEATS_S); a drive already pulling it
    keeps its one pull, its due time and its one request (issue 11: 10,000 drives hear each)."""
    site.write_ekt()
    site.lan.run(horizon_s=0)  # the write's announcement heard; no request due yet
    pulls = {i: dict(site.drive(i)._pulls) for i in range(3)}
    assert all(len(p) == 1 for p in pulls.values())
    for _ in range(2):
        site.lan.announce(TOKEN_A)
        site.lan.run(horizon_s=0)
    assert len(events(site, dr.PullScheduled)) == 3
    assert {i: dict(site.drive(i)._pulls) for i in range(3)} == pulls
    site.lan.run()
    assert len(site.lan.sent(MessageType.KEY_REQUEST)) == 3
    assert all(site.drive(i).vop_status().led is EncryptionLed.AMBER for i in range(3))
