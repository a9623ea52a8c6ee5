"""The Token state machine: what it serves, erases, records and refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import protocol as p
from kms_client.builders import build_ekt, build_okt
from protocol.constants import (
    KEY_REQUEST_ANSWERS_PER_CSN_PER_S,
    KEY_REQUEST_UNKNOWN_ANSWERS_PER_S,
    MAX_BROADCAST_DATAGRAM,
    ErrorCode,
    KeyKind,
    MessageType,
    MgmtStatus,
    NoPackageReason,
    TokenLed,
    TokenMode,
)
from tests.site import TOKEN_A, Site, arm, make_site
from token_daemon import token as tk
from token_daemon.errors import MemoryImageError
from token_daemon.token import Token
from token_daemon.memory import MemoryStore


@pytest.fixture
def site(tmp_path: Path) -> Site:
    return make_site(tmp_path)


KEY = bytes.fromhex("0a0b0c0d00000063")


def _ask(token: tk.Token, csn: bytes, kind: KeyKind, seq: int = 5) -> p.Frame:
    out = token.receive_lan(p.decode(p.encode(p.KeyRequest(csn, kind, 0), sequence=seq)), ("127.0.1.9", 7012), 1)
    assert len(out.sends) == 1 and out.sends[0].to == ("127.0.1.9", 7012)
    return p.decode(out.sends[0].data)


def test_a_blank_token_is_dark_and_announces_nothing(site: Site) -> None:
    token = site.lan.tokens[TOKEN_A]
    assert (token.led3, token.error_led) == (TokenLed.OFF, TokenLed.OFF)
    assert token.announcement() is None


def test_ekt_write_announces_and_serves_each_csn_its_own_package(site: Site) -> None:
    site.write_ekt()
    token = site.lan.tokens[TOKEN_A]
    assert token.led3 is TokenLed.FLASHING_GREEN
    (sender, announce), = site.lan._queue
    ka = p.decode(announce.data).message
    assert isinstance(ka, p.KeysAvailable) and ka.mode is TokenMode.EKT and ka.csn_count == 3
    assert all(m.csn in ka.csn_filter for m in site.made)
    reply = _ask(token, site.made[1].csn, KeyKind.DEVICE, seq=77)
    assert isinstance(reply.message, p.DeviceKeyPackage) and reply.message.csn == site.made[1].csn
    assert reply.sequence == 77 and reply.is_reply


@pytest.mark.parametrize(("csn", "kind", "reason"), [
    (b"\xff" * 8, KeyKind.DEVICE, NoPackageReason.NOT_HELD),
    (None, KeyKind.MEDIA, NoPackageReason.WRONG_KIND),
])
def test_no_package_says_why(site: Site, csn: bytes | None, kind: KeyKind, reason: NoPackageReason) -> None:
    site.write_ekt()
    reply = _ask(site.lan.tokens[TOKEN_A], csn or site.made[0].csn, kind)
    assert reply.message == p.NoPackage(csn or site.made[0].csn, kind, reason)


def test_ekt_erases_a_delivered_package_but_keeps_the_csn(site: Site) -> None:
    site.write_ekt()
    site.lan.run()
    token = site.lan.tokens[TOKEN_A]
    status = token.status()
    assert (status.csn_count, status.packages_held, status.acknowledged) == (3, 0, 3)
    assert token.led3 is TokenLed.FLASHING_GREEN  # CSNs remain
    assert token.announcement() is None  # nothing left to deliver
    assert _ask(token, site.made[0].csn, KeyKind.DEVICE).message.reason is NoPackageReason.DELIVERED  # type: ignore[union-attr]
    assert all(p.clear_authorizations for p in token.memory.packages.values())


def test_okt_keeps_its_packages_after_delivery(site: Site) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    status = token.status()
    assert status.mode is TokenMode.OKT and token.led3 is TokenLed.SOLID_GREEN
    assert (status.packages_held, status.acknowledged) == (3, 3)
    assert token.announcement() is not None


def test_an_ack_with_a_wrong_receipt_erases_nothing(site: Site) -> None:
    site.write_ekt()
    token = site.lan.tokens[TOKEN_A]
    ack = p.KeyAck(site.made[0].csn, KeyKind.DEVICE, token.memory.timestamp, bytes(16))
    out = token.receive_lan(p.decode(p.encode(ack)), ("127.0.1.1", 7012), 1)
    assert isinstance(out.events[0], tk.AckRejected) and not out.persist
    assert token.status().packages_held == 3


def test_error_reports_light_the_error_led_until_the_next_write(site: Site) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    report = _report(site, 2, b"\x0a\x0b\x0c\x0d\x00\x00\x00\x63")
    for _ in range(2):  # a repeated report is held once
        token.receive_lan(p.decode(p.encode(report)), ("127.0.1.3", 7012), 99)
    assert token.error_led is TokenLed.FLASHING_RED
    assert token.status().errors == (p.TokenError(report.csn, ErrorCode.MISSING_KEY, report.key_id, 99),)
    site.write_okt()  # "A write operation to the token will clear the error message."
    assert token.error_led is TokenLed.OFF and token.status().errors == ()


def test_reports_about_drives_the_token_does_not_serve_are_ignored(site: Site) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    report = p.ErrorReport(b"\x01" * 8, ErrorCode.MISSING_KEY, bytes(8), 5, bytes(16))
    out = token.receive_lan(p.decode(p.encode(report)), ("127.0.9.9", 7012), 1)
    assert isinstance(out.events[0], tk.ErrorIgnored) and token.error_led is TokenLed.OFF


def _report(site: Site, i: int, key_id: bytes, *, code: ErrorCode = ErrorCode.MISSING_KEY,
            timestamp: int | None = None, pckey: bytes | None = None) -> p.ErrorReport:
    """What drive ``i`` sends about the write its token holds (or ``timestamp``)."""
    token = site.lan.tokens[TOKEN_A]
    ts = token.memory.timestamp if timestamp is None else timestamp
    return p.reportauth.signed_report(pckey or site.made[i].pckey, site.made[i].csn, code, key_id, ts)


@pytest.mark.parametrize("forgery", ["bad mac", "other drive's key", "other write", "other csn"])
def test_forged_error_reports_are_dropped_and_counted(site: Site, forgery: str) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    good = _report(site, 2, KEY)
    report = {
        "bad mac": p.ErrorReport(good.csn, good.error_code, good.key_id, good.timestamp, bytes(16)),
        "other drive's key": _report(site, 2, KEY, pckey=site.made[1].pckey),
        "other write": _report(site, 2, KEY, timestamp=token.memory.timestamp - 1),
        "other csn": p.ErrorReport(site.made[1].csn, good.error_code, good.key_id, good.timestamp, good.mac),
    }[forgery]
    out = token.receive_lan(p.decode(p.encode(report)), (site.ip(2), 7012), 1)
    assert [type(e) for e in out.events] == [tk.ErrorIgnored] and not out.persist
    assert token.status().errors == () and token.error_led is TokenLed.OFF


def test_errors_take_one_slot_per_csn_and_code(site: Site) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    for n in range(50):
        token.receive_lan(p.decode(p.encode(_report(site, 1, n.to_bytes(8, "big")))), (site.ip(1), 7012), 10 + n)
    token.receive_lan(p.decode(p.encode(_report(site, 1, KEY, code=ErrorCode.KEY_MESSAGE_DECRYPTION))),
                      (site.ip(1), 7012), 99)
    errors = token.status().errors
    assert [(e.csn, e.error_code, e.key_id) for e in errors] == [
        (site.made[1].csn, ErrorCode.MISSING_KEY, (49).to_bytes(8, "big")),  # the latest key ID it reported
        (site.made[1].csn, ErrorCode.KEY_MESSAGE_DECRYPTION, KEY),
    ]


def test_key_requests_are_answered_within_a_per_csn_budget(site: Site) -> None:
    site.write_ekt()
    token = site.lan.tokens[TOKEN_A]
    request = p.decode(p.encode(p.KeyRequest(site.made[0].csn, KeyKind.DEVICE, 0)))
    second = 7 * 1_000_000
    outs = [token.receive_lan(request, ("127.0.1.9", 7012), second + i) for i in range(100)]
    answered = [o for o in outs if o.sends]
    assert len(answered) == KEY_REQUEST_ANSWERS_PER_CSN_PER_S
    assert all(isinstance(o.events[0], tk.AnswerThrottled) for o in outs if not o.sends)
    other = p.decode(p.encode(p.KeyRequest(site.made[1].csn, KeyKind.DEVICE, 0)))
    assert token.receive_lan(other, ("127.0.1.9", 7012), second + 200).sends  # its own budget
    unknown = [p.decode(p.encode(p.KeyRequest(n.to_bytes(8, "big"), KeyKind.DEVICE, 0))) for n in range(500)]
    assert sum(1 for r in unknown if token.receive_lan(r, ("127.0.1.9", 7012), second + 300).sends) == \
        KEY_REQUEST_UNKNOWN_ANSWERS_PER_S
    assert token.receive_lan(request, ("127.0.1.9", 7012), second + 1_000_000).sends  # the next second


def test_management_with_a_wrong_secret_is_refused_and_changes_nothing(site: Site) -> None:
    token = site.lan.tokens[TOKEN_A]
    ekt = build_ekt(site.kms, site.names, use_pckey=True)
    frame = p.decode(p.encode_authenticated(ekt, secret=b"\x01" * 32, counter=10))
    out = token.receive_management(frame, 1)
    assert isinstance(out.events[0], tk.ManagementRefused) and out.events[0].status is MgmtStatus.AUTH_FAILED
    assert not out.persist and token.memory.mode is TokenMode.EMPTY and not out.sends


def test_unauthenticated_management_is_refused(site: Site) -> None:
    out = site.lan.tokens[TOKEN_A].receive_management(p.decode(p.encode(p.ClearError())), 1)
    assert out.events[0].status is MgmtStatus.AUTH_FAILED  # type: ignore[union-attr]


def test_a_replayed_request_is_refused(site: Site) -> None:
    secret = site.secrets[TOKEN_A]
    assert site.lan.manage(TOKEN_A, p.ReadStatus(), secret, counter=50).mode is TokenMode.EMPTY  # type: ignore[union-attr]
    reply = site.lan.manage(TOKEN_A, p.ClearError(), secret, counter=50)
    assert isinstance(reply, p.MgmtResult) and reply.status is MgmtStatus.REPLAYED


def test_a_non_request_on_the_management_channel_gets_bad_request(site: Site) -> None:
    reply = site.lan.manage(TOKEN_A, p.VopStatusRequest(), site.secrets[TOKEN_A])
    assert isinstance(reply, p.MgmtResult) and reply.status is MgmtStatus.BAD_REQUEST


def test_reset_button_splits_clear_keys_into_unfragmented_datagrams(tmp_path: Path) -> None:
    site = make_site(tmp_path, drive_count=100)
    site.write_ekt()
    out = site.lan.tokens[TOKEN_A].press_reset()
    assert len(out.sends) == 3  # 100 drives x 1 authorisation, 36 per datagram
    decoded = [p.decode(t.data).message for t in out.sends]
    assert all(len(t.data) <= MAX_BROADCAST_DATAGRAM and t.is_broadcast for t in out.sends)
    assert [m.part for m in decoded] == [0, 1, 2] and {m.parts for m in decoded} == {3}  # type: ignore[union-attr]
    assert {a.csn for m in decoded for a in m.authorizations} == {d.csn for d in site.made}  # type: ignore[union-attr]


def test_reinserting_with_reset_held_wipes_the_token(site: Site) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    token_id = token.memory.token_id
    out = token.wipe()
    assert out.persist and token.memory.packages == {} and token.memory.mode is TokenMode.EMPTY
    assert token.led3 is TokenLed.OFF and token.announcement() is None and token.memory.token_id == token_id


def test_memory_survives_a_restart_with_acks_and_errors(site: Site, tmp_path: Path) -> None:
    site.write_ekt()
    site.lan.drop = lambda sender, t: t.to[0] == site.ip(2) or sender == site.ip(2)  # d2 is away
    site.lan.run()
    token = site.lan.tokens[TOKEN_A]
    token.receive_lan(p.decode(p.encode(_report(site, 1, bytes(8)))), (site.ip(1), 7012), 5)
    store = MemoryStore(tmp_path / "tok", site.secrets[TOKEN_A])
    store.save(token.memory)
    restored = MemoryStore(tmp_path / "tok", site.secrets[TOKEN_A]).load()
    assert restored == token.memory
    assert Token(restored, site.secrets[TOKEN_A]).status() == token.status()
    assert token.status().packages_held == 1 and len(list((tmp_path / "tok").glob("contents-*.bin"))) == 1


def test_a_corrupt_contents_file_is_detected(site: Site, tmp_path: Path) -> None:
    arm(site)
    store = MemoryStore(tmp_path / "tok", site.secrets[TOKEN_A])
    store.save(site.lan.tokens[TOKEN_A].memory)
    (contents,) = (tmp_path / "tok").glob("contents-*.bin")
    data = bytearray(contents.read_bytes())
    data[40] ^= 1
    contents.write_bytes(bytes(data))
    with pytest.raises(MemoryImageError, match="does not open under this token's secret"):
        MemoryStore(tmp_path / "tok", site.secrets[TOKEN_A]).load()


def test_keys_available_fits_one_datagram_for_ten_thousand_drives() -> None:
    csns = [i.to_bytes(8, "big") for i in range(10_000)]
    signed = p.envelope.sign_announcement(p.envelope.new_signing_key(), TokenMode.OKT, 1, csns)
    data = p.encode(p.KeysAvailable(b"\x00" * 8, TokenMode.OKT, 1, len(csns), signed.csn_filter, signed.signature))
    assert len(data) <= MAX_BROADCAST_DATAGRAM
    assert p.decode(data).message.csn_filter.__contains__(csns[1234])  # type: ignore[union-attr]
    assert MessageType.KEYS_AVAILABLE is p.decode(data).message.TYPE


def _manage(token: Token, message: p.Message, secret: bytes, counter: int) -> tuple[tk.Output, p.Message]:
    out = token.receive_management_bytes(p.encode_authenticated(message, secret=secret, counter=counter), 1)
    assert out.reply is not None
    reply = p.open_frame(out.reply, secret)
    assert reply.is_reply and reply.counter == counter
    return out, reply.message  # type: ignore[return-value]


def test_a_token_without_a_counter_applies_nothing_until_a_resync_with_its_challenge(site: Site) -> None:
    secret = site.secrets[TOKEN_A]
    token = site.lan.tokens[TOKEN_A]
    assert not token.memory.counter_set
    ekt = build_ekt(site.kms, site.names, use_pckey=True)
    out, challenge = _manage(token, ekt, secret, 5)
    assert isinstance(challenge, p.MgmtChallenge) and not out.persist and not out.sends
    assert token.memory.mode is TokenMode.EMPTY and isinstance(out.events[0], tk.ChallengeIssued)
    assert challenge.challenge not in out.reply  # type: ignore[operator]  # sealed: only the KMS reads it
    _, again = _manage(token, p.ReadStatus(), secret, 6)
    assert again == challenge  # kept until used
    _, wrong = _manage(token, p.Resync(bytes(16)), secret, 7)
    assert isinstance(wrong, p.MgmtResult) and wrong.status is MgmtStatus.REPLAYED and not token.memory.counter_set
    out, ok = _manage(token, p.Resync(challenge.challenge), secret, 10)
    assert isinstance(ok, p.MgmtResult) and ok.status is MgmtStatus.OK and out.persist
    assert token.memory.counter_set and token.memory.mgmt_counter == 10
    _, spent = _manage(token, p.Resync(challenge.challenge), secret, 11)  # a captured RESYNC: its challenge is spent
    assert isinstance(spent, p.MgmtResult) and spent.status is MgmtStatus.REPLAYED
    for captured in (5, 10):
        _, refused = _manage(token, ekt, secret, captured)
        assert isinstance(refused, p.MgmtResult) and refused.status is MgmtStatus.REPLAYED
    _, written = _manage(token, ekt, secret, 12)
    assert isinstance(written, p.MgmtResult) and written.status is MgmtStatus.OK and token.memory.mode is TokenMode.EKT


def test_an_image_loaded_at_a_token_without_a_counter_sets_it(site: Site) -> None:
    secret = site.secrets[TOKEN_A]
    token = site.lan.tokens[TOKEN_A]
    image = p.encode_authenticated(build_ekt(site.kms, site.names, use_pckey=True), secret=secret, counter=40)
    out = token.receive_management(p.decode(image), 1, local=True)
    assert isinstance(p.open_frame(out.reply, secret).message, p.MgmtResult)  # type: ignore[arg-type]
    assert token.memory.counter_set and token.memory.mgmt_counter == 40 and token.memory.mode is TokenMode.EKT
    again = token.receive_management(p.decode(image), 2, local=True)
    assert again.events[0].status is MgmtStatus.REPLAYED  # type: ignore[union-attr]


def test_token_memory_is_sealed_private_and_cleaned_of_leftovers(site: Site, tmp_path: Path) -> None:
    arm(site)
    memory = site.lan.tokens[TOKEN_A].memory
    state = tmp_path / "tok"
    store = MemoryStore(state, site.secrets[TOKEN_A])
    store.save(memory)
    (contents,) = state.glob("contents-*.bin")
    auths = [a.mac for h in memory.packages.values() for a in h.clear_authorizations]
    assert auths and memory.contents is not None and all(a in memory.contents for a in auths)
    assert not any(a in contents.read_bytes() for a in auths)
    assert {oct(p.stat().st_mode & 0o777) for p in state.iterdir()} == {"0o600"}
    (state / "token.json.tmp").write_bytes(b"half")
    state.chmod(0o755)
    assert store.prepare() == ["token.json.tmp"] and oct(state.stat().st_mode & 0o777) == "0o700"
    assert MemoryStore(state, site.secrets[TOKEN_A]).load() == memory
    with pytest.raises(MemoryImageError, match="does not verify under this token's secret"):
        MemoryStore(state, bytes(32)).load()
    # The replay counter cannot be edited down (to have captured writes accepted again).
    data = json.loads((state / "token.json").read_text())
    assert data["mgmt_counter"] > 0 and data["counter_set"] is True
    (state / "token.json").write_text(json.dumps(data | {"mgmt_counter": 0}))
    with pytest.raises(MemoryImageError, match="token.json does not verify"):
        MemoryStore(state, site.secrets[TOKEN_A]).load()


def test_a_repeated_request_gets_the_same_package_framed_with_its_own_sequence(site: Site) -> None:
    site.write_ekt()
    token = site.lan.tokens[TOKEN_A]
    csn = site.made[0].csn
    asked = []
    for seq in (5, 6, 6, 2**32 - 1):
        out = token.receive_lan(p.decode(p.encode(p.KeyRequest(csn, KeyKind.DEVICE, 0), sequence=seq)), ("127.0.1.1", 7012),
                                2_000_000 + seq % 1000)
        asked.append(p.decode(out.sends[0].data))
        assert out.events == [tk.PackageServed(csn, KeyKind.DEVICE)]
    assert [f.sequence for f in asked] == [5, 6, 6, 2**32 - 1] and all(f.is_reply for f in asked)
    assert len({f.raw[16:] for f in asked}) == 1  # one body, as the KMS sealed it
    assert asked[0].raw[16:] == token.memory.packages[csn].package_body


def test_a_write_keeps_the_octets_the_kms_sealed_and_replaces_every_answer(site: Site) -> None:
    arm(site)
    token = site.lan.tokens[TOKEN_A]
    csn = site.made[0].csn
    before = _ask(token, csn, KeyKind.MEDIA).message
    site.map_new_key()
    okt = build_okt(site.kms, "P")
    site.lan.manage(TOKEN_A, okt, site.secrets[TOKEN_A])
    held = {e.package.csn: p.encode_body(e.package) for e in okt.entries}
    assert {c: h.package_body for c, h in token.memory.packages.items()} == held
    after = _ask(token, csn, KeyKind.MEDIA).message
    assert isinstance(after, p.MediaKeyPackage) and after != before and after.okt_timestamp == okt.okt_timestamp


def test_an_erased_package_is_answered_as_delivered_even_after_it_was_served(site: Site) -> None:
    site.write_ekt()
    token = site.lan.tokens[TOKEN_A]
    csn = site.made[0].csn
    assert isinstance(_ask(token, csn, KeyKind.DEVICE).message, p.DeviceKeyPackage)  # served, remembered
    site.lan.run()  # the drives take their packages and acknowledge them: the EKT erases them
    assert _ask(token, csn, KeyKind.DEVICE).message == p.NoPackage(csn, KeyKind.DEVICE, NoPackageReason.DELIVERED)
