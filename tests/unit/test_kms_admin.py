"""Database key, backup key, KMS ID and the audit trail."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from kms_client import keyadmin
from kms_client.builders import build_ekt
from kms_client.errors import StoreError
from kms_client.store import DB_NAME, DBKEY_NAME, KmsStore
from protocol.ids import split_key_id
from protocol.manufacturing import make_drives


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=b"\x0a\x0b\x0c\x0d", operator="alice")
    for i, d in enumerate(make_drives(2)):
        s.add_drive(f"d{i}", d.csn, d.pckey, d.model)
    build_ekt(s, ["d0", "d1"], use_pckey=True)
    s.create_key("k")
    s.add_token("tok", "127.0.0.21", 7020)
    return s


def _plain_values(s: KmsStore) -> list[bytes]:
    return ([s.key_value(k) for k in s.key_ids()] + [s.pckey(n) for n in ("d0", "d1")]
            + [k for n in ("d0", "d1") for _, k in s.device_keys(n, 5)] + [s.token_secret("tok")]
            + [s.kms_signing_key()])


def test_changing_the_database_key_reencrypts_everything(store: KmsStore, tmp_path: Path) -> None:
    before = _plain_values(store)
    old = store._dbkey
    new = os.urandom(32)
    assert keyadmin.set_dbkey(store, new) == 2 + 2 + 2 + 1 + 1 + 3  # PCkeys, device keys and their OKT material, key, token, meta
    store.close()
    reopened = KmsStore.open(tmp_path / "kms")
    assert _plain_values(reopened) == before
    assert (tmp_path / "kms" / DBKEY_NAME).read_text().strip() == new.hex()
    assert not (tmp_path / "kms" / (DBKEY_NAME + ".new")).exists()
    (tmp_path / "kms" / DBKEY_NAME).write_text(old.hex())
    with pytest.raises(StoreError, match="not the key of this store"):
        KmsStore.open(tmp_path / "kms")
    data = b"".join(p.read_bytes() for p in (tmp_path / "kms").glob(DB_NAME + "*"))
    assert [v for v in before if v in data] == []


def test_a_crash_after_reencryption_is_finished_at_the_next_open(store: KmsStore, tmp_path: Path) -> None:
    before = _plain_values(store)
    directory = tmp_path / "kms"
    original_replace = os.replace

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt("power lost before the key file was switched")

    os.replace = crash  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            keyadmin.set_dbkey(store, os.urandom(32))
    finally:
        os.replace = original_replace  # type: ignore[assignment]
    store.close()
    assert (directory / (DBKEY_NAME + ".new")).exists()
    assert _plain_values(KmsStore.open(directory)) == before
    assert not (directory / (DBKEY_NAME + ".new")).exists()


def test_backup_key_and_kms_id(store: KmsStore) -> None:
    with pytest.raises(StoreError, match="no backup key"):
        keyadmin.view_backupkey(store)
    key = os.urandom(32)
    keyadmin.set_backupkey(store, key)
    assert keyadmin.view_backupkey(store) == key
    keyadmin.set_kmsid(store, b"\x11\x22\x33\x44")
    assert split_key_id(store.create_key())[0] == b"\x11\x22\x33\x44"


def test_every_action_is_in_the_audit_trail_by_operator(store: KmsStore) -> None:
    actions = [(r.operator, r.action) for r in store.audit_records()]
    assert actions == [("alice", "init"), ("alice", "import_drive"), ("alice", "import_drive"),
                       ("alice", "create_device_keys"), ("alice", "create_key"), ("alice", "add_token")]
    assert store.verify_audit().ok


def test_the_trail_refuses_update_and_delete(store: KmsStore) -> None:
    for sql in ("UPDATE audit SET operator='mallory'", "DELETE FROM audit WHERE seq=2"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            store._conn.execute(sql)


@pytest.mark.parametrize(("tamper", "finding"), [
    ("UPDATE audit SET operator='mallory' WHERE seq=3", "record 3 (import_drive) was altered"),
    ("DELETE FROM audit WHERE seq=2", "record 2 is missing"),
    ("DELETE FROM audit WHERE seq=6", "removed from its end"),
])
def test_verify_finds_edits_and_deletions(store: KmsStore, tmp_path: Path, tamper: str, finding: str) -> None:
    store.close()
    raw = sqlite3.connect(tmp_path / "kms" / DB_NAME)  # someone with the file, not the database key
    raw.executescript(f"DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; {tamper};")
    raw.commit()
    raw.close()
    verdict = KmsStore.open(tmp_path / "kms").verify_audit()
    assert not verdict.ok and any(finding in p for p in verdict.problems), verdict.problems


def test_a_version_1_store_is_migrated(tmp_path: Path) -> None:
    from kms_client import migrations
    from kms_client import store as store_module
    from protocol import envelope

    directory, dbkey = tmp_path / "v1", os.urandom(32)
    directory.mkdir()
    (directory / DBKEY_NAME).write_text(dbkey.hex())
    raw = sqlite3.connect(directory / DB_NAME)  # the store as the first release wrote it: no audit trail
    raw.executescript(store_module._SCHEMA)
    raw.executemany("INSERT INTO meta VALUES (?, ?)", [
        ("schema_version", 1), ("kms_id", b"\x00\x00\x00\x01"), ("next_ordinal", 1), ("last_timestamp", 0),
        ("dbkey_check", envelope.seal(dbkey, store_module._CHECK, b"meta:check"))])
    raw.commit()
    raw.close()
    upgraded = KmsStore.open(directory)
    assert upgraded._meta("schema_version") == migrations.LATEST
    assert len(upgraded.kms_public_key()) == 32  # v7: the KMS signing key, made by the migration
    upgraded.create_key()
    assert [r.action for r in upgraded.audit_records()] == ["create_key"] and upgraded.verify_audit().ok
