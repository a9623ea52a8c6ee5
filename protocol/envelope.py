"""The crypto envelope: how keys are wrapped, bound and authenticated.

Every wrapped key is AES-256-GCM ciphertext whose associated data binds the
message type, the CSN, the timestamp and the key ID, so it cannot be replayed
to another drive, under another timestamp or as another key. A media key
package's receipt is bound to the package's whole header (write key and key
list included), so a changed or shortened package does not decrypt. Keys used for
different purposes are derived from one secret with HKDF and distinct labels.
Announcements (KEYS_AVAILABLE) are signed by the KMS's Ed25519 key; a drive
verifies them with the public key its device-key package brought, once per
distinct announcement per process (a small cache keyed by the signed bytes).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import struct
from typing import Iterable

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from .constants import (
    ANNOUNCEMENT_CACHE_SIZE,
    CLEAR_MAC_SIZE,
    CSN_SIZE,
    DEVICE_KEY_SIZE,
    KEY_ID_SIZE,
    KMS_PUBLIC_KEY_SIZE,
    MEDIA_KEY_SIZE,
    NONCE_SIZE,
    RECEIPT_SIZE,
    SIGNATURE_SIZE,
    MessageType,
    TokenMode,
)
from .csn_filter import CsnFilter
from .errors import AuthenticationError, UnwrapError
from .ids import ZERO_KEY_ID
from .messages import Announcement, KeysAvailable, WrappedMediaKey, WrappedReceipt

_DOMAIN = b"t10k-v1"
_LABEL_MEDIA_WRAP = b"t10k media-key wrap"
_LABEL_DEVICE_WRAP = b"t10k device-key wrap"
_LABEL_CLEAR = b"t10k clear-keys"
_LABEL_NVRAM = b"t10k drive nvram"
_LABEL_MGMT = b"t10k mgmt seal"
_LABEL_TOKEN_MEMORY = b"t10k token memory"
_LABEL_TOKEN_STATE = b"t10k token state mac"
_ANNOUNCEMENT_DOMAIN = b"t10k-v3 keys-available announcement"
_PACKAGE_HEADER_DOMAIN = b"t10k-v3 media-key package header"


def derive(secret: bytes, label: bytes) -> bytes:
    """A 256-bit key for one purpose, derived from a device key, PCkey or secret."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(secret)


def binding(message_type: MessageType, csn: bytes, timestamp: int, key_id: bytes) -> bytes:
    """Associated data tying a wrapped key to its message type, drive, time and ID."""
    if len(csn) != CSN_SIZE or len(key_id) != KEY_ID_SIZE:
        raise ValueError("binding needs an 8-octet CSN and an 8-octet key ID")
    return _DOMAIN + struct.pack(">B8sQ8s", int(message_type), csn, timestamp, key_id)


def _seal(key: bytes, plaintext: bytes, ad: bytes) -> tuple[bytes, bytes]:
    nonce = os.urandom(NONCE_SIZE)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, ad)


def _open(key: bytes, nonce: bytes, ciphertext: bytes, ad: bytes, what: str) -> bytes:
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, ad)
    except InvalidTag:
        raise UnwrapError(f"{what} did not decrypt: wrong key, or altered data or binding") from None


# --- media keys (under a drive's device key) --------------------------------


class MediaKeyWrapper:
    """Wraps and unwraps media keys and receipts under one device key."""

    def __init__(self, device_key: bytes) -> None:
        self._aead = AESGCM(media_wrap_key(device_key))

    @classmethod
    def from_wrap_key(cls, wrap_key: bytes) -> MediaKeyWrapper:
        """The wrapper of the device key that :func:`media_wrap_key` gave ``wrap_key`` for."""
        wrapper = cls.__new__(cls)
        wrapper._aead = AESGCM(wrap_key)
        return wrapper

    def wrap_key(self, csn: bytes, okt_timestamp: int, key_id: bytes, media_key: bytes) -> WrappedMediaKey:
        if len(media_key) != MEDIA_KEY_SIZE:
            raise ValueError(f"a media key is {MEDIA_KEY_SIZE} octets")
        nonce = os.urandom(NONCE_SIZE)
        ad = binding(MessageType.MEDIA_KEY_PACKAGE, csn, okt_timestamp, key_id)
        return WrappedMediaKey(key_id, nonce, self._aead.encrypt(nonce, media_key, ad))

    def unwrap_key(self, csn: bytes, okt_timestamp: int, wrapped: WrappedMediaKey) -> bytes:
        ad = binding(MessageType.MEDIA_KEY_PACKAGE, csn, okt_timestamp, wrapped.key_id)
        try:
            return self._aead.decrypt(wrapped.nonce, wrapped.wrapped, ad)
        except InvalidTag:
            raise UnwrapError(f"media key {wrapped.key_id.hex()} did not decrypt under this device key") from None

    def wrap_receipt(self, header: bytes, receipt: bytes) -> WrappedReceipt:
        """The receipt, bound to the package's whole header (see :func:`media_package_header`)."""
        nonce = os.urandom(NONCE_SIZE)
        return WrappedReceipt(nonce, self._aead.encrypt(nonce, receipt, header))

    def unwrap_receipt(self, header: bytes, wrapped: WrappedReceipt) -> bytes:
        try:
            return self._aead.decrypt(wrapped.nonce, wrapped.wrapped, header)
        except InvalidTag:
            raise UnwrapError(
                "the package receipt did not decrypt: another device key, or a package header "
                "(write key, key list, CSN, timestamp) other than the KMS made"
            ) from None


def media_wrap_key(device_key: bytes) -> bytes:
    """The key a device key's media keys and receipts are wrapped under (HKDF of it). A KMS
    keeps it, sealed, beside the device key: an OKT for 10,000 drives then derives none."""
    if len(device_key) != DEVICE_KEY_SIZE:
        raise ValueError(f"a device key is {DEVICE_KEY_SIZE} octets")
    return derive(device_key, _LABEL_MEDIA_WRAP)


def media_package_header(
    csn: bytes, okt_timestamp: int, device_key_id: bytes, write_key_id: bytes, key_ids: Iterable[bytes]
) -> bytes:
    """Associated data of a MEDIA_KEY_PACKAGE's receipt: every header field and the key IDs in
    order, so a changed write key, a removed, added or reordered key fails to decrypt."""
    ids = list(key_ids)
    for k in ids:
        if len(k) != KEY_ID_SIZE:
            raise ValueError("key IDs are 8 octets")
    if len(write_key_id) != KEY_ID_SIZE:
        raise ValueError("key IDs are 8 octets")
    return (
        binding(MessageType.KEY_ACK, csn, okt_timestamp, ZERO_KEY_ID) + _PACKAGE_HEADER_DOMAIN
        + device_key_id + write_key_id + bytes([len(ids)]) + b"".join(ids)
    )


# --- device keys (under the PCkey or the current device key) ----------------


def wrap_device_key(
    wrapping_secret: bytes, csn: bytes, timestamp: int, device_key_id: bytes, device_key: bytes, receipt: bytes,
    kms_public_key: bytes,
) -> tuple[bytes, bytes]:
    """Wrap a new device key, its receipt and the KMS's public key; returns (nonce, ciphertext)."""
    if len(device_key) != DEVICE_KEY_SIZE or len(receipt) != RECEIPT_SIZE or len(kms_public_key) != KMS_PUBLIC_KEY_SIZE:
        raise ValueError("a device key is 32 octets, a receipt 16 and a KMS public key 32")
    ad = binding(MessageType.DEVICE_KEY_PACKAGE, csn, timestamp, device_key_id)
    return _seal(derive(wrapping_secret, _LABEL_DEVICE_WRAP), device_key + receipt + kms_public_key, ad)


def unwrap_device_key(
    wrapping_secret: bytes, csn: bytes, timestamp: int, device_key_id: bytes, nonce: bytes, wrapped: bytes
) -> tuple[bytes, bytes, bytes]:
    """Returns (device_key, receipt, kms_public_key) or raises UnwrapError."""
    ad = binding(MessageType.DEVICE_KEY_PACKAGE, csn, timestamp, device_key_id)
    plain = _open(derive(wrapping_secret, _LABEL_DEVICE_WRAP), nonce, wrapped, ad, "device key package")
    end = DEVICE_KEY_SIZE + RECEIPT_SIZE
    return plain[:DEVICE_KEY_SIZE], plain[DEVICE_KEY_SIZE:end], plain[end:]


# --- announcements (signed by the KMS) --------------------------------------


def new_signing_key() -> bytes:
    """A fresh KMS announcement key: the 32-octet Ed25519 private key (seal it at rest)."""
    # An Ed25519 private key is 32 random octets (RFC 8032); drawn from os.urandom like every
    # other key, so the reference captures (captures/regenerate.py) stay reproducible.
    return Ed25519PrivateKey.from_private_bytes(os.urandom(32)).private_bytes(
        Encoding.Raw, PrivateFormat.Raw, NoEncryption()
    )


def public_key_of(signing_key: bytes) -> bytes:
    """The 32-octet Ed25519 public key drives verify announcements with."""
    return Ed25519PrivateKey.from_private_bytes(signing_key).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def announcement_signed_bytes(mode: TokenMode, timestamp: int, csn_count: int, csn_filter: CsnFilter) -> bytes:
    """What the KMS signs: domain, mode, timestamp, csn_count and the filter (hash count, bits)."""
    return (
        _ANNOUNCEMENT_DOMAIN
        + struct.pack(">BQIBH", int(mode), timestamp, csn_count, csn_filter.hash_count, len(csn_filter.bits))
        + csn_filter.bits
    )


def sign_announcement(signing_key: bytes, mode: TokenMode, timestamp: int, csns: Iterable[bytes]) -> Announcement:
    """The announcement a token broadcasts for a write serving these CSNs."""
    members = list(csns)
    csn_filter = CsnFilter.of(members)
    signed = announcement_signed_bytes(mode, timestamp, len(members), csn_filter)
    signature = Ed25519PrivateKey.from_private_bytes(signing_key).sign(signed)
    return Announcement(len(members), csn_filter, signature)


def verify_announcement(kms_public_key: bytes, offer: KeysAvailable) -> bool:
    """True when the KMS signed this mode, timestamp, count and filter (token_id is not signed).

    Cached by the octets: a process hosting thousands of drives checks one datagram once; and
    by the decoded offer its drives are each handed, so they do not rebuild those octets."""
    global _last_verified
    last = _last_verified
    if last is not None and last[0] is offer and last[1] == kms_public_key:
        return last[2]
    signed = announcement_signed_bytes(offer.mode, offer.timestamp, offer.csn_count, offer.csn_filter)
    verified = _verify_cached(kms_public_key, signed, offer.signature)
    _last_verified = (offer, kms_public_key, verified)  # it holds the offer: no other object gets its id
    return verified


#: (offer, public key, verdict) of the last check: the same decoded offer, handed to each drive of a host.
_last_verified: tuple[KeysAvailable, bytes, bool] | None = None


@functools.lru_cache(maxsize=ANNOUNCEMENT_CACHE_SIZE)
def _verify_cached(kms_public_key: bytes, signed: bytes, signature: bytes) -> bool:
    if len(kms_public_key) != KMS_PUBLIC_KEY_SIZE or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(kms_public_key).verify(signature, signed)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_cache_info() -> tuple[int, int]:
    """(hits, misses) of the announcement cache: misses are signature checks actually made."""
    info = _verify_cached.cache_info()
    return info.hits, info.misses


def receipt_hash(receipt: bytes) -> bytes:
    """What a token stores to check a KEY_ACK without ever seeing a key."""
    return hashlib.sha256(_DOMAIN + b" receipt" + receipt).digest()


# --- clear keys --------------------------------------------------------------


def clear_mac(device_key: bytes, csn: bytes, device_key_id: bytes) -> bytes:
    """Authorises clearing one drive while it holds this device key (single use by nature:
    after the clear the drive no longer holds the key the MAC was made under)."""
    msg = _DOMAIN + bytes([MessageType.CLEAR_KEYS]) + csn + device_key_id
    return hmac.new(derive(device_key, _LABEL_CLEAR), msg, hashlib.sha256).digest()[:CLEAR_MAC_SIZE]


def verify_clear_mac(device_key: bytes, csn: bytes, device_key_id: bytes, mac: bytes) -> bool:
    return hmac.compare_digest(clear_mac(device_key, csn, device_key_id), mac)


# --- management channel -----------------------------------------------------


@functools.lru_cache(maxsize=256)
def _mgmt_aead(secret: bytes) -> AESGCM:
    """One key derivation per token secret, not one per frame."""
    return AESGCM(derive(secret, _LABEL_MGMT))


def _mgmt_ad(header: bytes, counter: int) -> bytes:
    return _DOMAIN + b" mgmt" + header + counter.to_bytes(8, "big")


def seal_mgmt(secret: bytes, header: bytes, counter: int, plaintext: bytes) -> tuple[bytes, bytes]:
    """Seal a management body under the token secret; the header (type, flags with REPLY,
    sequence, length) and the replay counter are its associated data. Returns (nonce, ciphertext+tag)."""
    nonce = os.urandom(NONCE_SIZE)
    return nonce, _mgmt_aead(secret).encrypt(nonce, plaintext, _mgmt_ad(header, counter))


def open_mgmt(secret: bytes, header: bytes, counter: int, nonce: bytes, sealed: bytes) -> bytes:
    """The plaintext body of a sealed management frame, or AuthenticationError."""
    try:
        return _mgmt_aead(secret).decrypt(nonce, sealed, _mgmt_ad(header, counter))
    except InvalidTag:
        raise AuthenticationError(
            "management message does not decrypt: wrong token secret, or altered message") from None


def token_memory_key(secret: bytes) -> bytes:
    """Seals a token's memory at rest (what the KMS wrote: packages and clear authorisations)."""
    return derive(secret, _LABEL_TOKEN_MEMORY)


def token_state_mac(secret: bytes, state: bytes) -> str:
    """HMAC-SHA256 (hex) of a token's state file: its replay counter cannot be edited down."""
    return hmac.new(derive(secret, _LABEL_TOKEN_STATE), state, hashlib.sha256).hexdigest()


# --- storage sealing (drive NVRAM, KMS database) ----------------------------


def nvram_key(pckey: bytes) -> bytes:
    return derive(pckey, _LABEL_NVRAM)


class Sealer:
    """:func:`seal` and :func:`unseal` under one key, its AES-GCM context made once: a KMS
    opens 20,000 sealed rows to build one OKT for 10,000 drives. Same octets as those."""

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, plaintext: bytes, ad: bytes) -> bytes:
        nonce = os.urandom(NONCE_SIZE)
        return nonce + self._aead.encrypt(nonce, plaintext, _DOMAIN + b" store " + ad)

    def unseal(self, sealed: bytes, ad: bytes, what: str) -> bytes:
        if len(sealed) < NONCE_SIZE + 16:
            raise UnwrapError(f"{what} is too short to be sealed data")
        try:
            return self._aead.decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], _DOMAIN + b" store " + ad)
        except InvalidTag:
            raise UnwrapError(f"{what} did not decrypt: wrong key, or altered data or binding") from None


def seal(key: bytes, plaintext: bytes, ad: bytes) -> bytes:
    """AES-256-GCM for data at rest: nonce followed by ciphertext."""
    return Sealer(key).seal(plaintext, ad)


def unseal(key: bytes, sealed: bytes, ad: bytes, what: str) -> bytes:
    if len(sealed) < NONCE_SIZE + 16:
        raise UnwrapError(f"{what} is too short to be sealed data")
    return Sealer(key).unseal(sealed, ad, what)


# --- tape blocks -------------------------------------------------------------


class BlockCipher:
    """AES-256-GCM for tape blocks under one media key.

    The key ID travels in the clear beside each block (SSC's key-associated data); the
    associated data binds volume, block number and key ID, so a block cannot be moved to
    another place or tape unnoticed.
    """

    def __init__(self, media_key: bytes) -> None:
        self._aead = AESGCM(media_key)

    @staticmethod
    def _ad(volser: str, block: int, key_id: bytes) -> bytes:
        return _DOMAIN + b" block " + volser.encode("ascii").ljust(16, b"\0") + struct.pack(">Q", block) + key_id

    def seal(self, volser: str, block: int, key_id: bytes, data: bytes | memoryview) -> tuple[bytes, bytes]:
        """Returns (nonce, ciphertext with tag)."""
        nonce = os.urandom(NONCE_SIZE)
        return nonce, self._aead.encrypt(nonce, data, self._ad(volser, block, key_id))

    def open(self, volser: str, block: int, key_id: bytes, nonce: bytes, ciphertext: bytes | memoryview) -> bytes:
        try:
            return self._aead.decrypt(nonce, ciphertext, self._ad(volser, block, key_id))
        except InvalidTag:
            raise UnwrapError(f"block {block} of {volser} does not decrypt under key {key_id.hex()}") from None
