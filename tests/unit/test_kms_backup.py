"""Backups under the backup key; restore by dump ID or latest, onto this KMS or another."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kms_client import keyadmin
from kms_client.backup import backup_dir, list_backups, restore, take_backup
from kms_client.builders import build_ekt
from kms_client.errors import NotFound, StoreError
from kms_client.store import KmsStore
from protocol.manufacturing import make_drives

BACKUP_KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "primary", dbkey=os.urandom(32), kms_id=b"\x0a\x0b\x0c\x0d")
    for i, d in enumerate(make_drives(2)):
        s.add_drive(f"d{i}", d.csn, d.pckey, d.model)
    build_ekt(s, ["d0", "d1"], use_pckey=True)
    keyadmin.set_backupkey(s, BACKUP_KEY)
    return s


def test_a_backup_needs_the_backup_key(tmp_path: Path) -> None:
    s = KmsStore.create(tmp_path / "k", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x01")
    with pytest.raises(StoreError, match="set-backupkey"):
        take_backup(s, "test")


def test_restore_latest_or_by_dump_id(store: KmsStore, tmp_path: Path) -> None:
    first_key = store.create_key()
    first = take_backup(store, "one")
    time.sleep(0.002)
    second_key = store.create_key()
    take_backup(store, "two")
    assert [b.reason for b in list_backups(store.directory)] == ["one", "two"]
    values = {k: store.key_value(k) for k in (first_key, second_key)}
    store.close()
    restore(tmp_path / "primary", BACKUP_KEY, first.dump_id)
    s = KmsStore.open(tmp_path / "primary")
    assert s.key_ids() == [first_key] and s.key_value(first_key) == values[first_key]
    assert s.audit_records()[-1].action == "restore" and s.verify_audit().ok
    s.close()
    restore(tmp_path / "primary", BACKUP_KEY, "latest")
    assert KmsStore.open(tmp_path / "primary").key_ids() == [first_key, second_key]


def test_restoring_onto_another_kms_brings_its_kms_id_and_keys(store: KmsStore, tmp_path: Path) -> None:
    key = store.create_key()
    value = store.key_value(key)
    take_backup(store, "for the other site")
    other = KmsStore.create(tmp_path / "other", dbkey=os.urandom(32), kms_id=b"\x99\x99\x99\x99")
    other.close()
    restore(tmp_path / "other", BACKUP_KEY, "latest", source=tmp_path / "primary")
    restored = KmsStore.open(tmp_path / "other")
    assert restored.kms_id == b"\x0a\x0b\x0c\x0d" and restored.key_value(key) == value
    keyadmin.set_kmsid(restored, b"\x99\x99\x99\x99")  # the seed: set_kmsid gives it back its own


def test_a_wrong_key_or_a_damaged_backup_changes_nothing(store: KmsStore, tmp_path: Path) -> None:
    key = store.create_key()
    info = take_backup(store, "x")
    store.close()
    db_before = (tmp_path / "primary" / "kms.sqlite3").read_bytes()
    with pytest.raises(StoreError, match="wrong backup key"):
        restore(tmp_path / "primary", bytes(32), "latest")
    path = backup_dir(tmp_path / "primary") / f"{info.dump_id}.t10kbak"
    data = bytearray(path.read_bytes())
    data[-100] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="damaged"):
        restore(tmp_path / "primary", BACKUP_KEY, "latest")
    with pytest.raises(NotFound, match="no backup with dump ID"):
        restore(tmp_path / "primary", BACKUP_KEY, "20990101T000000000000Z")
    assert (tmp_path / "primary" / "kms.sqlite3").read_bytes() == db_before
    assert KmsStore.open(tmp_path / "primary").key_ids() == [key]


def test_no_plaintext_key_in_a_backup(store: KmsStore) -> None:
    secrets = [store.key_value(store.create_key())] + [store.pckey(n) for n in ("d0", "d1")]
    secrets += [k for n in ("d0", "d1") for _, k in store.device_keys(n, 3)] + [store._dbkey, BACKUP_KEY]
    info = take_backup(store, "scan")
    data = (backup_dir(store.directory) / f"{info.dump_id}.t10kbak").read_bytes()
    assert [s.hex() for s in secrets if s in data or s.hex().encode() in data] == []
