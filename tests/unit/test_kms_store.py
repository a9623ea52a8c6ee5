"""The thin KMS store: rules of the seed, keys sealed under the database key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kms_client.builders import build_ekt, build_okt
from kms_client.errors import NotFound, RuleViolation, StoreError
from kms_client.store import DB_NAME, KmsStore, parse_db_key
from protocol.ids import split_key_id
from protocol.manufacturing import make_drives

KMS_ID = bytes.fromhex("0a0b0c0d")


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=KMS_ID)
    for i, d in enumerate(make_drives(3)):
        s.add_drive(f"d{i}", d.csn, d.pckey, d.model)
    s.create_pool("P")
    return s


def test_key_ids_carry_the_kms_id_and_an_ordinal(store: KmsStore) -> None:
    first, second = store.create_key(), store.create_key()
    assert split_key_id(first)[0] == KMS_ID and split_key_id(second)[1] == split_key_id(first)[1] + 1


def test_a_drive_must_be_enabled_before_it_joins_a_pool(store: KmsStore) -> None:
    with pytest.raises(RuleViolation, match="limitation 5") as info:
        store.add_drive_to_pool("P", "d0")
    assert "EKT" in str(info.value)
    build_ekt(store, ["d0"], use_pckey=True)
    store.add_drive_to_pool("P", "d0")
    assert [d.name for d in store.pool_drives("P")] == ["d0"]


def test_first_enrolment_needs_the_pckey(store: KmsStore) -> None:
    with pytest.raises(RuleViolation, match="--use-pckey"):
        build_ekt(store, ["d0"], use_pckey=False)


def test_mapping_rules(store: KmsStore) -> None:
    keys = [store.create_key() for _ in range(33)]
    store.create_key_set("big")
    for k in keys[:32]:
        store.add_key_to_set("big", k)
    with pytest.raises(RuleViolation, match="limitation 7"):
        store.add_key_to_set("big", keys[32])
    store.create_key_set("one")
    store.add_key_to_set("one", keys[32])
    with pytest.raises(RuleViolation, match="limitation 8"):
        store.set_mapping("P", ["big", "one"], keys[0])
    with pytest.raises(RuleViolation, match="write key"):
        store.set_mapping("P", ["one"], keys[0])
    with pytest.raises(RuleViolation, match="at least one key"):
        store.set_mapping("P", [], keys[0])
    store.create_key_set("empty")
    with pytest.raises(RuleViolation, match="empty"):
        store.set_mapping("P", ["empty"], keys[0])


def test_an_active_key_set_cannot_be_modified(store: KmsStore) -> None:
    k1, k2 = store.create_key(), store.create_key()
    store.create_key_set("KS1")
    store.add_key_to_set("KS1", k1)
    store.set_mapping("P", ["KS1"], k1)
    with pytest.raises(RuleViolation, match="limitation 9.*Method 1"):
        store.add_key_to_set("KS1", k2)


def test_every_change_or_apply_gives_a_later_timestamp(store: KmsStore) -> None:
    k = store.create_key()
    store.create_key_set("KS1")
    store.add_key_to_set("KS1", k)
    stamps = [store.set_mapping("P", ["KS1"], k).timestamp]
    stamps += [store.apply_mapping("P").timestamp for _ in range(5)]
    assert stamps == sorted(set(stamps))


def test_names_are_permanent(store: KmsStore) -> None:
    with pytest.raises(RuleViolation, match="permanent"):
        store.create_pool("P")
    d = make_drives(1, first_serial=1)[0]
    with pytest.raises(RuleViolation):
        store.add_drive("d0", d.csn, d.pckey, d.model)


def test_unknown_entities_are_named(store: KmsStore) -> None:
    with pytest.raises(NotFound, match="no drive named 'nope'"):
        store.drive("nope")
    with pytest.raises(NotFound, match="no mapping"):
        build_okt(store, "P")


def test_wrong_database_key_is_refused(tmp_path: Path) -> None:
    KmsStore.create(tmp_path / "k", dbkey=os.urandom(32), kms_id=KMS_ID).close()
    (tmp_path / "k" / "dbkey").write_text(os.urandom(32).hex())
    with pytest.raises(StoreError, match="not the key of this store"):
        KmsStore.open(tmp_path / "k")


def test_missing_store_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="t10k kms init"):
        KmsStore.open(tmp_path / "none")


@pytest.mark.parametrize("text", ["ab" * 31, "zz" * 32, "ab" * 33, ""])
def test_database_keys_are_64_hex_characters(text: str) -> None:
    with pytest.raises(StoreError, match="64 hexadecimal"):
        parse_db_key(text)


def test_no_plaintext_key_material_in_the_database_files(store: KmsStore, tmp_path: Path) -> None:
    build_ekt(store, ["d0", "d1", "d2"], use_pckey=True)
    secrets = [store.key_value(store.create_key()) for _ in range(5)]
    secrets += [k for n in ("d0", "d1", "d2") for _, k in store.device_keys(n, 3)]
    secrets += [store.pckey(n) for n in ("d0", "d1", "d2")]
    secrets.append(store.add_token("T", "127.0.0.21", 7020))
    data = b"".join(p.read_bytes() for p in (tmp_path / "kms").glob(DB_NAME + "*"))
    assert len(data) > 4096 and not [s for s in secrets if s in data or s.hex().encode() in data]
