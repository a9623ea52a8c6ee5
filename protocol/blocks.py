"""Tape block encryption: which key seals a block, with which nonce, and how many blocks per key.

A media key lives for years, serves every drive of a pool and every tape they write. Random
96-bit GCM nonces under it would be safe only up to 2**32 blocks in all (NIST SP 800-38D, 8.3),
and nothing counted them. So, since protocol version 3 (docs/PROTOCOL.md, "Tape blocks"), no
block is sealed under the media key itself:

- each write session (the first encrypted write with a key after a cartridge is loaded) draws a
  random 16-octet salt;
- its block key is HKDF-SHA256(media key, info = label + volume serial + salt);
- its nonces are a counter from 0 (four zero octets, then the counter in eight), so no nonce
  repeats under a block key, and a block key seals at most MAX_BLOCKS_PER_BLOCK_KEY blocks;
  the next seal raises BlockKeyExhausted and the drive starts a new session (a new salt);
- the record's payload is salt(16) + nonce(12) + ciphertext + tag(16) (BlockScheme.SESSION_KEY);
  the associated data binds the volume serial, the block number and the key ID, as before.

Two sessions share a block key only if their salts collide: about n**2 / 2**129 for n sessions
on one volume under one media key. Blocks written before version 3 (BlockScheme.RANDOM_NONCE:
a random nonce under the media key) are still read, never written.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from . import envelope
from .constants import BLOCK_SALT_SIZE, MAX_BLOCKS_PER_BLOCK_KEY, NONCE_SIZE, TAG_SIZE, BlockScheme
from .errors import BlockKeyExhausted, UnwrapError

_LABEL_BLOCK_KEY = b"t10k-v3 tape block key"
_DOMAIN = b"t10k-v3 block "
#: Derived block keys a reader keeps (a tape has a few sessions; a crafted one cannot grow memory).
_READ_CACHE = 64


def head_size(scheme: BlockScheme) -> int:
    """Octets before the ciphertext in an encrypted record's payload."""
    return NONCE_SIZE + (BLOCK_SALT_SIZE if scheme is BlockScheme.SESSION_KEY else 0)


def _volser(volser: str) -> bytes:
    return volser.encode("ascii").ljust(16, b"\0")


def block_key(media_key: bytes, volser: str, salt: bytes) -> bytes:
    if len(salt) != BLOCK_SALT_SIZE:
        raise ValueError(f"a block-key salt is {BLOCK_SALT_SIZE} octets")
    info = _LABEL_BLOCK_KEY + _volser(volser) + salt
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(media_key)


def _ad(volser: str, block: int, key_id: bytes) -> bytes:
    return _DOMAIN + _volser(volser) + struct.pack(">Q", block) + key_id


class BlockWriter:
    """One write session under one media key on one volume: a fresh salt, its block key, a counter."""

    def __init__(self, media_key: bytes, volser: str, key_id: bytes, *, limit: int = MAX_BLOCKS_PER_BLOCK_KEY) -> None:
        if not 0 < limit <= MAX_BLOCKS_PER_BLOCK_KEY:
            raise ValueError(f"a block key seals 1..{MAX_BLOCKS_PER_BLOCK_KEY} blocks")
        self.salt = os.urandom(BLOCK_SALT_SIZE)
        self.volser, self.key_id, self.limit = volser, key_id, limit
        self.sealed = 0
        self._aead = AESGCM(block_key(media_key, volser, self.salt))

    @property
    def exhausted(self) -> bool:
        """Every nonce of this block key is used: the next seal would be refused."""
        return self.sealed >= self.limit

    def seal(self, block: int, data: bytes | memoryview) -> tuple[bytes, bytes]:
        """Returns (salt + nonce, ciphertext with tag): the record's payload, in two parts."""
        if self.exhausted:
            raise BlockKeyExhausted(
                f"the block key of media key {self.key_id.hex()} on {self.volser} has sealed {self.sealed} blocks, "
                f"the most its nonces allow ({self.limit}); a new write session (a new salt) must take over")
        nonce = bytes(NONCE_SIZE - 8) + self.sealed.to_bytes(8, "big")
        self.sealed += 1
        return self.salt + nonce, self._aead.encrypt(nonce, data, _ad(self.volser, block, self.key_id))


class BlockCrypto:
    """Every block operation under one media key: new write sessions, and reading either scheme."""

    def __init__(self, media_key: bytes) -> None:
        self._media_key = media_key
        self._legacy = envelope.BlockCipher(media_key)
        self._block_keys: dict[tuple[str, bytes], AESGCM] = {}

    def writer(self, volser: str, key_id: bytes, *, limit: int = MAX_BLOCKS_PER_BLOCK_KEY) -> BlockWriter:
        return BlockWriter(self._media_key, volser, key_id, limit=limit)

    def open(self, volser: str, block: int, key_id: bytes, scheme: BlockScheme, payload: bytes | memoryview) -> bytes:
        """The plain block, from a record's whole payload; UnwrapError if it does not authenticate."""
        view = memoryview(payload)
        head = head_size(scheme)
        if len(view) < head + TAG_SIZE:
            raise UnwrapError(f"block {block} of {volser} is too short to be encrypted ({len(view)} octets)")
        if scheme is BlockScheme.RANDOM_NONCE:
            return self._legacy.open(volser, block, key_id, bytes(view[:NONCE_SIZE]), view[NONCE_SIZE:])
        salt, nonce = bytes(view[:BLOCK_SALT_SIZE]), bytes(view[BLOCK_SALT_SIZE:head])
        aead = self._block_keys.get((volser, salt))
        if aead is None:
            if len(self._block_keys) >= _READ_CACHE:
                self._block_keys.clear()
            aead = self._block_keys[volser, salt] = AESGCM(block_key(self._media_key, volser, salt))
        try:
            return aead.decrypt(nonce, view[head:], _ad(volser, block, key_id))
        except InvalidTag:
            raise UnwrapError(f"block {block} of {volser} does not decrypt under key {key_id.hex()}") from None
