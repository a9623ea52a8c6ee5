"""One cold standby: backup sets copied to it, and a manual failover."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from kms_client import keyadmin
from kms_client.backup import list_backups, take_backup
from kms_client.errors import StoreError
from kms_client.standby import failover, set_standby, sync
from kms_client.store import KmsStore

BACKUP_KEY = bytes(range(32))


@pytest.fixture
def primary(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "primary", dbkey=os.urandom(32), kms_id=b"\x0a\x0b\x0c\x0d")
    keyadmin.set_backupkey(s, BACKUP_KEY)
    return s


def test_sync_copies_only_new_backup_sets(primary: KmsStore, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no standby"):
        sync(primary)
    set_standby(primary, tmp_path / "standby")
    take_backup(primary, "one")
    assert len(sync(primary)) == 1
    assert sync(primary) == []
    time.sleep(0.002)
    take_backup(primary, "two")
    assert len(sync(primary)) == 1
    assert [b.reason for b in list_backups(tmp_path / "standby")] == ["one", "two"]


def test_failover_with_the_primary_still_running(primary: KmsStore, tmp_path: Path) -> None:
    set_standby(primary, tmp_path / "standby")
    key = primary.create_key("made just before the failover")
    value = primary.key_value(key)
    failover(tmp_path / "standby", BACKUP_KEY, primary=primary)
    new_primary = KmsStore.open(tmp_path / "standby")
    assert new_primary.kms_id == b"\x0a\x0b\x0c\x0d" and new_primary.key_value(key) == value
    assert new_primary.verify_audit().ok


def test_failover_after_the_primary_is_lost(primary: KmsStore, tmp_path: Path) -> None:
    set_standby(primary, tmp_path / "standby")
    key = primary.create_key()
    take_backup(primary, "last one")
    sync(primary)
    primary.close()
    import shutil

    shutil.rmtree(tmp_path / "primary")  # the primary is gone
    failover(tmp_path / "standby", BACKUP_KEY)
    assert KmsStore.open(tmp_path / "standby").key_ids() == [key]
    with pytest.raises(StoreError, match="wrong backup key"):
        failover(tmp_path / "standby", bytes(32))
