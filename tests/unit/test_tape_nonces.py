"""GCM nonce use per tape key is bounded (issue 13, low): per-session block keys, counter nonces, a cap.

Real cartridges and an armed drive on the in-memory LAN; the bytes on the cartridge are read
back to show which salt and nonce each block carries.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from drive_daemon.cartridge import Cartridge, RecordKind
from protocol import envelope
from protocol.blocks import BlockCrypto, BlockWriter, block_key
from protocol.constants import BLOCK_SALT_SIZE, MAX_BLOCKS_PER_BLOCK_KEY, NONCE_SIZE, BlockScheme
from protocol.errors import BlockKeyExhausted, UnwrapError
from tests.site import Site, arm, make_site
from tests.tapesite import Deck, new_tape

KEY_ID = bytes.fromhex("0a0b0c0d00000001")


def _heads(library: Path, volser: str) -> list[tuple[BlockScheme, bytes, int]]:
    """(scheme, salt, nonce counter) of every encrypted block on the cartridge, in order."""
    tape = Cartridge.load(library, volser)
    try:
        out = []
        for i, rec in enumerate(tape.records):
            if rec.kind is RecordKind.ENCRYPTED:
                payload = tape.read_payload(i)
                nonce = payload[BLOCK_SALT_SIZE:BLOCK_SALT_SIZE + NONCE_SIZE]
                assert nonce[:4] == bytes(4)
                out.append((rec.scheme, payload[:BLOCK_SALT_SIZE], int.from_bytes(nonce[4:], "big")))
        return out
    finally:
        tape.close()


@pytest.fixture
def site(tmp_path: Path) -> Site:
    s = make_site(tmp_path, drive_count=1)
    arm(s)
    return s


def test_a_block_key_refuses_a_block_past_its_cap_with_a_clear_error() -> None:
    writer = BlockWriter(os.urandom(32), "VOL001", KEY_ID, limit=3)
    heads = [writer.seal(i, b"block %d" % i)[0] for i in range(3)]
    assert [h[BLOCK_SALT_SIZE:] for h in heads] == [bytes(4) + n.to_bytes(8, "big") for n in range(3)]
    assert writer.exhausted
    with pytest.raises(BlockKeyExhausted, match=r"media key 0a0b0c0d00000001 on VOL001 has sealed 3 blocks.*new write"):
        writer.seal(3, b"one too many")
    assert writer.sealed == 3  # the refused block used no nonce


def test_the_cap_is_a_constant_and_cannot_be_raised() -> None:
    assert BlockWriter(os.urandom(32), "V", KEY_ID).limit == MAX_BLOCKS_PER_BLOCK_KEY == 2**32
    with pytest.raises(ValueError):
        BlockWriter(os.urandom(32), "V", KEY_ID, limit=MAX_BLOCKS_PER_BLOCK_KEY + 1)


def test_blocks_are_sealed_under_a_derived_key_never_under_the_media_key() -> None:
    media_key = os.urandom(32)
    writer = BlockWriter(media_key, "VOL001", KEY_ID)
    head, ciphertext = writer.seal(0, b"data")
    salt, nonce = head[:BLOCK_SALT_SIZE], head[BLOCK_SALT_SIZE:]
    with pytest.raises(UnwrapError):  # the media key itself does not open it
        envelope.BlockCipher(media_key).open("VOL001", 0, KEY_ID, nonce, ciphertext)
    assert block_key(media_key, "VOL001", salt) != media_key
    assert block_key(media_key, "VOL001", salt) != block_key(media_key, "VOL002", salt)
    assert BlockCrypto(media_key).open("VOL001", 0, KEY_ID, BlockScheme.SESSION_KEY, head + ciphertext) == b"data"
    for volser, block, key_id in (("VOL002", 0, KEY_ID), ("VOL001", 1, KEY_ID), ("VOL001", 0, bytes(8))):
        with pytest.raises(UnwrapError):  # moved to another tape, place or key ID
            BlockCrypto(media_key).open(volser, block, key_id, BlockScheme.SESSION_KEY, head + ciphertext)


def test_each_load_is_a_new_session_and_a_full_block_key_hands_over_to_a_new_one(site: Site, tmp_path: Path) -> None:
    library = tmp_path / "library"
    deck = Deck(site, site.ip(0), library)
    deck.session.block_key_limit = 3
    assert deck.sense("load", new_tape(library, "VOL001")) == "none"
    blocks = [b"block %d" % i * 50 for i in range(7)]
    for b in blocks:
        assert deck.sense("write", b) == "none"
    assert deck.sense("unload") == "none"
    assert deck.sense("load", "VOL001") == "none"
    assert deck.sense("space_to_end") == "none"
    assert deck.sense("write", b"appended") == "none"
    assert deck.sense("unload") == "none"

    heads = _heads(library, "VOL001")
    assert {scheme for scheme, _, _ in heads} == {BlockScheme.SESSION_KEY}
    assert [n for _, _, n in heads] == [0, 1, 2, 0, 1, 2, 0, 0]
    salts = [salt for _, salt, _ in heads]
    assert salts[0] == salts[1] == salts[2] and salts[3] == salts[4] == salts[5]
    assert len({salts[0], salts[3], salts[6], salts[7]}) == 4  # three sessions of the first load, one of the second
    nonces = [(salt, n) for _, salt, n in heads]
    assert len(set(nonces)) == len(nonces)  # no (block key, nonce) pair twice

    assert deck.sense("load", "VOL001") == "none"  # everything reads back, as before
    assert [deck("read_block") for _ in range(8)] == [*blocks, b"appended"]


def test_rewriting_the_same_place_never_reuses_a_nonce(site: Site, tmp_path: Path) -> None:
    library = tmp_path / "library"
    deck = Deck(site, site.ip(0), library)
    assert deck.sense("load", new_tape(library, "VOL002")) == "none"
    seen = set()
    for i in range(5):  # the host rewrites block 0 again and again in one load
        assert deck.sense("rewind") == "none"
        assert deck.sense("write", b"version %d" % i) == "none"
        (_, salt, n), = _heads_while_loaded(deck)
        assert (salt, n) not in seen
        seen.add((salt, n))


def _heads_while_loaded(deck: Deck) -> list[tuple[BlockScheme, bytes, int]]:
    tape = deck.session.cartridge
    assert tape is not None
    out = []
    for i, rec in enumerate(tape.records):
        payload = tape.read_payload(i)
        out.append((rec.scheme, payload[:BLOCK_SALT_SIZE],
                    int.from_bytes(payload[BLOCK_SALT_SIZE + 4:BLOCK_SALT_SIZE + NONCE_SIZE], "big")))
    return out


def test_blocks_written_before_version_3_still_read(site: Site, tmp_path: Path) -> None:
    """A cartridge of an earlier build: a random nonce under the media key, scheme octet 0."""
    library = tmp_path / "library"
    key_id = site.kms.mapping("P").write_key_id
    media_key = site.kms.key_value(key_id)
    Cartridge.create(library, "OLD001")
    tape = Cartridge.load(library, "OLD001")
    legacy = envelope.BlockCipher(media_key)
    for i in range(3):
        nonce, ciphertext = legacy.seal("OLD001", i, key_id, b"old block %d" % i)
        tape.append(RecordKind.ENCRYPTED, [nonce, ciphertext], key_id)
    tape.close()

    deck = Deck(site, site.ip(0), library)
    assert deck.sense("load", "OLD001") == "none"
    assert [deck("read_block") for _ in range(3)] == [b"old block %d" % i for i in range(3)]
    assert deck.sense("write", b"appended by this build") == "none"  # appending uses the new scheme
    assert [r.scheme for r in deck.session.cartridge.records] == [BlockScheme.RANDOM_NONCE] * 3 + [BlockScheme.SESSION_KEY]  # type: ignore[union-attr]
    assert deck.sense("unload") == "none"
    assert deck.sense("load", "OLD001") == "none"
    assert [deck("read_block") for _ in range(4)] == [b"old block %d" % i for i in range(3)] + [b"appended by this build"]
