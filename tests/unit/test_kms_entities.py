"""Limitations 1-3 and 9: what may be deleted, described, and removed from a key set."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kms_client.builders import build_ekt
from kms_client.entities import delete, describe, remove_key_from_set
from kms_client.errors import RuleViolation
from kms_client.store import KmsStore
from protocol.manufacturing import make_drives


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=b"\x01\x02\x03\x04")
    for i, d in enumerate(make_drives(2)):
        s.add_drive(f"d{i}", d.csn, d.pckey, d.model)
    s.add_token("tok", "127.0.0.21", 7020)
    return s


def test_only_a_drive_created_in_error_may_be_deleted(store: KmsStore) -> None:
    delete(store, "drive", "d1")
    assert [d.name for d in store.drives()] == ["d0"]
    build_ekt(store, ["d0"], use_pckey=True)
    with pytest.raises(RuleViolation, match="limitation 1.*Reset it"):
        delete(store, "drive", "d0")
    for kind, name in (("key", store.create_key()), ("key-set", "KS"), ("token", "tok")):
        with pytest.raises(RuleViolation, match="cannot be deleted"):
            delete(store, kind, name)


def test_descriptions_only_while_unmapped(store: KmsStore) -> None:
    key = store.create_key()
    describe(store, "key", key, "---EXPIRED 8-31-2007 - DO NOT REUSE---")
    store.create_key_set("KS")
    store.add_key_to_set("KS", key)
    with pytest.raises(RuleViolation, match="key set 'KS'"):
        describe(store, "key", key, "again")
    describe(store, "token", "tok", "the bay in library 1")
    with pytest.raises(RuleViolation, match="256"):
        describe(store, "token", "tok", "x" * 257)
    store.create_pool("P")
    store.set_mapping("P", ["KS"], key)
    with pytest.raises(RuleViolation, match="mapped to pool 'P'"):
        describe(store, "key-set", "KS", "mapped")


def test_removing_a_key_only_from_an_unmapped_key_set(store: KmsStore) -> None:
    k1, k2 = store.create_key(), store.create_key()
    store.create_key_set("KS")
    for k in (k1, k2):
        store.add_key_to_set("KS", k)
    remove_key_from_set(store, "KS", k2)
    assert store.key_set_members("KS") == [k1]
    store.create_pool("P")
    store.set_mapping("P", ["KS"], k1)
    with pytest.raises(RuleViolation, match="limitation 9"):
        remove_key_from_set(store, "KS", k1)
