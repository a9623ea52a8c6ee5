"""Report keys and the VOP reset check, sans I/O (protocol version 3)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import protocol as p
from drive_daemon.credential import CredentialError, ResetGate, read_credential_file, reset_request, write_credential_file
from drive_daemon.drive import Drive
from kms_client.builders import build_ekt
from protocol.constants import ErrorCode, TokenLed
from protocol.reportauth import report_key, verify_report_mac, vop_reset_key
from tests.site import TOKEN_A, Site, make_site

CSN = bytes.fromhex("5700000000000001")


def test_a_report_key_is_bound_to_drive_csn_and_write() -> None:
    pckey = os.urandom(32)
    key = report_key(pckey, CSN, 1000)
    assert key == report_key(pckey, CSN, 1000)
    assert len({key, report_key(pckey, CSN, 1001), report_key(pckey, bytes(8), 1000),
                report_key(os.urandom(32), CSN, 1000)}) == 4
    report = p.reportauth.signed_report(pckey, CSN, ErrorCode.MISSING_KEY, bytes(8), 1000)
    assert verify_report_mac(key, CSN, ErrorCode.MISSING_KEY, bytes(8), 1000, report.mac)
    assert not verify_report_mac(key, CSN, ErrorCode.KEY_MESSAGE_DECRYPTION, bytes(8), 1000, report.mac)
    assert not verify_report_mac(key, CSN, ErrorCode.MISSING_KEY, b"\x01" * 8, 1000, report.mac)


def test_the_kms_gives_the_token_the_report_key_the_drive_derives(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    ekt = build_ekt(site.kms, site.names, use_pckey=True)
    for entry, made in zip(ekt.entries, site.made, strict=True):
        assert entry.report_key == report_key(made.pckey, made.csn, ekt.timestamp)


def test_a_drive_out_of_sync_reports_its_decryption_error_and_the_token_records_it(tmp_path: Path) -> None:
    """Scenario 4's symptom: an EKT under the PCkey to a drive holding device keys; the drive
    can still MAC its report (it holds its PCkey), so the token lights its error LED."""
    site: Site = make_site(tmp_path)
    site.write_ekt()
    site.lan.run()
    site.write_ekt(use_pckey=True)
    site.lan.run()
    token = site.lan.tokens[TOKEN_A]
    assert token.error_led is TokenLed.FLASHING_RED
    assert {e.error_code for e in token.status().errors} == {ErrorCode.KEY_MESSAGE_DECRYPTION}
    assert {e.csn for e in token.status().errors} == {m.csn for m in site.made}


def test_a_drive_reports_about_the_write_its_media_keys_came_from(tmp_path: Path) -> None:
    from tests.site import arm

    site = make_site(tmp_path)
    arm(site)
    drive: Drive = site.drive(0)
    assert drive.media is not None
    out = drive.missing_key(b"\x0a" * 8, 5.0)
    (send,) = out.sends
    report = p.decode(send.data).message
    assert isinstance(report, p.ErrorReport) and report.timestamp == drive.media.okt_timestamp
    key = report_key(site.made[0].pckey, site.made[0].csn, report.timestamp)
    assert verify_report_mac(key, report.csn, report.error_code, report.key_id, report.timestamp, report.mac)


def test_a_reset_answers_its_own_connections_challenge_once() -> None:
    credential = os.urandom(32)
    gate = ResetGate(CSN, vop_reset_key(credential, CSN))
    assert "no challenge" in (gate.refusal(p.VopResetDrive(bytes(16), bytes(16))) or "")
    first = gate.challenge()
    assert first.csn == CSN and gate.refusal(reset_request(credential, first)) is None
    assert "no challenge" in (gate.refusal(reset_request(credential, first)) or "")  # used up
    other = ResetGate(CSN, vop_reset_key(credential, CSN))
    other.challenge()
    assert "replayed" in (other.refusal(reset_request(credential, first)) or "")
    third = gate.challenge()
    assert "MAC does not verify" in (gate.refusal(reset_request(os.urandom(32), third)) or "")
    another_drive = ResetGate(bytes(8), vop_reset_key(credential, bytes(8)))
    challenge = another_drive.challenge()
    forged = reset_request(credential, p.VopChallenge(CSN, challenge.challenge))  # keyed for another CSN
    assert "MAC does not verify" in (another_drive.refusal(forged) or "")


def test_a_host_without_a_credential_refuses_every_reset() -> None:
    gate = ResetGate(CSN, None)
    challenge = gate.challenge()
    assert "--service-credential-file" in (gate.refusal(reset_request(os.urandom(32), challenge)) or "")


def test_credential_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cred"
    credential = write_credential_file(path)
    assert read_credential_file(path) == credential and stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(CredentialError, match="exists"):
        write_credential_file(path)
    assert write_credential_file(path, force=True) != credential
    path.write_text("abcd\n")
    with pytest.raises(CredentialError, match="64 hex digits"):
        read_credential_file(path)
    with pytest.raises(CredentialError, match="cannot read"):
        read_credential_file(tmp_path / "absent")
