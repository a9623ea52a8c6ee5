"""The crypto envelope: wrapped keys are bound to type, CSN, timestamp and key ID."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from protocol import CsnFilter, KeysAvailable, envelope
from protocol.constants import MessageType, TokenMode
from protocol.errors import AuthenticationError, UnwrapError

CSN, OTHER_CSN = b"\x57" + bytes(7), b"\x58" + bytes(7)
KEY_ID = bytes.fromhex("0a0b0c0d00000001")


@pytest.fixture
def device_key() -> bytes:
    return os.urandom(32)


def test_media_key_round_trip(device_key: bytes) -> None:
    key = os.urandom(32)
    w = envelope.MediaKeyWrapper(device_key)
    wrapped = w.wrap_key(CSN, 100, KEY_ID, key)
    assert key not in wrapped.wrapped
    assert envelope.MediaKeyWrapper(device_key).unwrap_key(CSN, 100, wrapped) == key


@pytest.mark.parametrize("change", ["csn", "timestamp", "key_id", "device_key"])
def test_media_key_cannot_be_replayed_elsewhere(device_key: bytes, change: str) -> None:
    wrapped = envelope.MediaKeyWrapper(device_key).wrap_key(CSN, 100, KEY_ID, os.urandom(32))
    csn, ts, dk = CSN, 100, device_key
    if change == "csn":
        csn = OTHER_CSN
    elif change == "timestamp":
        ts = 101
    elif change == "key_id":
        wrapped = replace(wrapped, key_id=bytes.fromhex("0a0b0c0d00000002"))
    else:
        dk = os.urandom(32)
    with pytest.raises(UnwrapError):
        envelope.MediaKeyWrapper(dk).unwrap_key(csn, ts, wrapped)


def test_message_type_is_bound() -> None:
    assert envelope.binding(MessageType.MEDIA_KEY_PACKAGE, CSN, 1, KEY_ID) != envelope.binding(
        MessageType.DEVICE_KEY_PACKAGE, CSN, 1, KEY_ID)


def test_device_key_package_round_trip_and_binding(device_key: bytes) -> None:
    pckey, receipt, kms_public_key = os.urandom(32), os.urandom(16), os.urandom(32)
    nonce, wrapped = envelope.wrap_device_key(pckey, CSN, 7, KEY_ID, device_key, receipt, kms_public_key)
    assert envelope.unwrap_device_key(pckey, CSN, 7, KEY_ID, nonce, wrapped) == (device_key, receipt, kms_public_key)
    with pytest.raises(UnwrapError):
        envelope.unwrap_device_key(pckey, CSN, 8, KEY_ID, nonce, wrapped)
    with pytest.raises(UnwrapError):
        envelope.unwrap_device_key(os.urandom(32), CSN, 7, KEY_ID, nonce, wrapped)


def test_receipt_round_trip(device_key: bytes) -> None:
    w = envelope.MediaKeyWrapper(device_key)
    receipt = os.urandom(16)
    ids = [KEY_ID, bytes(7) + b"\x09"]
    header = envelope.media_package_header(CSN, 5, KEY_ID, KEY_ID, ids)
    assert w.unwrap_receipt(header, w.wrap_receipt(header, receipt)) == receipt
    with pytest.raises(UnwrapError):
        w.unwrap_receipt(envelope.media_package_header(OTHER_CSN, 5, KEY_ID, KEY_ID, ids), w.wrap_receipt(header, receipt))


@pytest.mark.parametrize("change", ["write key", "key removed", "keys reordered", "timestamp", "device key ID"])
def test_the_receipt_binds_the_whole_package_header(device_key: bytes, change: str) -> None:
    """Finding 7: a package with its write key changed or a key removed does not decrypt."""
    w = envelope.MediaKeyWrapper(device_key)
    read, write = bytes(7) + b"\x01", bytes(7) + b"\x02"
    header = envelope.media_package_header(CSN, 5, KEY_ID, write, [read, write])
    wrapped = w.wrap_receipt(header, os.urandom(16))
    other = {
        "write key": envelope.media_package_header(CSN, 5, KEY_ID, read, [read, write]),
        "key removed": envelope.media_package_header(CSN, 5, KEY_ID, read, [read]),
        "keys reordered": envelope.media_package_header(CSN, 5, KEY_ID, write, [write, read]),
        "timestamp": envelope.media_package_header(CSN, 6, KEY_ID, write, [read, write]),
        "device key ID": envelope.media_package_header(CSN, 5, OTHER_CSN, write, [read, write]),
    }[change]
    with pytest.raises(UnwrapError):
        w.unwrap_receipt(other, wrapped)


def test_announcements_verify_only_as_the_kms_signed_them() -> None:
    signing = envelope.new_signing_key()
    public = envelope.public_key_of(signing)
    a = envelope.sign_announcement(signing, TokenMode.OKT, 5, [CSN])
    offer = KeysAvailable(b"\x01" * 8, TokenMode.OKT, 5, a.csn_count, a.csn_filter, a.signature)
    assert envelope.verify_announcement(public, offer)
    assert envelope.verify_announcement(public, replace(offer, token_id=b"\x02" * 8))  # informational
    for forged in (replace(offer, timestamp=2**63), replace(offer, mode=TokenMode.EKT),
                   replace(offer, csn_count=2), replace(offer, csn_filter=CsnFilter.of([OTHER_CSN])),
                   replace(offer, signature=bytes(64))):
        assert not envelope.verify_announcement(public, forged)
    assert not envelope.verify_announcement(envelope.public_key_of(envelope.new_signing_key()), offer)
    assert envelope.verify_announcement(public, offer)  # the same decoded offer, its own key again


def test_one_announcement_is_verified_once_however_many_drives_ask() -> None:
    signing = envelope.new_signing_key()
    public = envelope.public_key_of(signing)
    a = envelope.sign_announcement(signing, TokenMode.EKT, 9, [CSN])
    offer = KeysAvailable(b"\x01" * 8, TokenMode.EKT, 9, a.csn_count, a.csn_filter, a.signature)
    _, misses = envelope.verify_cache_info()
    assert all(envelope.verify_announcement(public, offer) for _ in range(10_000))
    assert envelope.verify_cache_info()[1] == misses + 1


def test_clear_mac_verifies_only_under_the_same_key_and_drive(device_key: bytes) -> None:
    mac = envelope.clear_mac(device_key, CSN, KEY_ID)
    assert envelope.verify_clear_mac(device_key, CSN, KEY_ID, mac)
    assert not envelope.verify_clear_mac(os.urandom(32), CSN, KEY_ID, mac)
    assert not envelope.verify_clear_mac(device_key, OTHER_CSN, KEY_ID, mac)


def test_mgmt_seal_binds_header_and_counter() -> None:
    secret = os.urandom(32)
    nonce, sealed = envelope.seal_mgmt(secret, b"header", 5, b"body")
    assert b"body" not in sealed and len(sealed) == 4 + 16
    assert envelope.open_mgmt(secret, b"header", 5, nonce, sealed) == b"body"
    for args in ((b"headeR", 5), (b"header", 6)):
        with pytest.raises(AuthenticationError):
            envelope.open_mgmt(secret, *args, nonce, sealed)
    with pytest.raises(AuthenticationError):
        envelope.open_mgmt(os.urandom(32), b"header", 5, nonce, sealed)
    # The memory key and the channel key are distinct derivations of the one secret.
    assert envelope.token_memory_key(secret) != envelope.derive(secret, b"t10k mgmt seal")


def test_seal_binds_associated_data() -> None:
    key = os.urandom(32)
    sealed = envelope.seal(key, b"secret", b"row:1")
    assert envelope.unseal(key, sealed, b"row:1", "x") == b"secret"
    with pytest.raises(UnwrapError):
        envelope.unseal(key, sealed, b"row:2", "x")
    with pytest.raises(UnwrapError, match="too short"):
        envelope.unseal(key, b"abc", b"row:1", "x")
