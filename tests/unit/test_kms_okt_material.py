"""Each device key's OKT material (media-key wrapping key and clear authorisation), made once
with the key and kept sealed: an OKT built from it is what one built from the device keys
would be, an older store gains it when opened, and none of it is ever in the database in clear."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pytest

from kms_client import intents, migrations
from kms_client.builders import build_ekt, build_okt, prepare_ekt
from kms_client.store import DB_NAME, DeviceKeyChanges, KmsStore
from protocol import envelope
from protocol.manufacturing import make_drives


def _store(path: Path) -> KmsStore:
    store = KmsStore.create(path, dbkey=os.urandom(32), kms_id=b"\x0a\x0b\x0c\x0d", operator="alice")
    for i, d in enumerate(make_drives(3)):
        store.add_drive(f"d{i}", d.csn, d.pckey, d.model)
    build_ekt(store, ["d0", "d1", "d2"], use_pckey=True)
    build_ekt(store, ["d0", "d1"], use_pckey=False)  # d0 and d1 hold two device keys, d2 one
    key = store.create_key()
    store.create_key_set("KS")
    store.add_key_to_set("KS", key)
    store.create_pool("P")
    for name in ("d0", "d1", "d2"):
        store.add_drive_to_pool("P", name)
    store.set_mapping("P", ["KS"], key)
    store.add_token("tok", "127.0.0.21", 7020)
    return store


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    return _store(tmp_path / "kms")


def _check_okt_against_device_keys(store: KmsStore) -> None:
    """What a drive does with the OKT, under the device keys themselves; and the MACs it checks."""
    okt = build_okt(store, "P")
    media = {k: store.key_value(k) for k in store.mapping("P").key_ids}
    for entry, name in zip(okt.entries, ("d0", "d1", "d2"), strict=True):
        package, history = entry.package, store.device_keys(name, 3)
        device_key_id, device_key = history[0]
        assert package.device_key_id == device_key_id
        wrapper = envelope.MediaKeyWrapper(device_key)
        assert {w.key_id: wrapper.unwrap_key(package.csn, package.okt_timestamp, w) for w in package.media_keys} == media
        header = envelope.media_package_header(package.csn, package.okt_timestamp, device_key_id, package.write_key_id,
                                               [w.key_id for w in package.media_keys])
        assert envelope.receipt_hash(wrapper.unwrap_receipt(header, package.receipt)) == entry.receipt_hash
        assert [(a.device_key_id, a.mac) for a in entry.clear_authorizations] == [
            (key_id, envelope.clear_mac(key, package.csn, key_id)) for key_id, key in history]


def test_an_okt_from_the_kept_material_is_what_the_device_keys_give(store: KmsStore) -> None:
    _check_okt_against_device_keys(store)


def test_a_version_7_store_gains_the_material_when_opened(store: KmsStore, tmp_path: Path) -> None:
    store.close()
    raw = sqlite3.connect(tmp_path / "kms" / DB_NAME)  # as schema 7 left it: no material
    raw.execute("ALTER TABLE device_keys DROP COLUMN okt_sealed")
    raw.execute("UPDATE meta SET value=7 WHERE name='schema_version'")
    raw.commit()
    raw.close()
    upgraded = KmsStore.open(tmp_path / "kms")
    assert upgraded._meta("schema_version") == migrations.LATEST
    _check_okt_against_device_keys(upgraded)


def test_a_write_recorded_before_the_material_existed_makes_it_when_committed(store: KmsStore) -> None:
    prepared = prepare_ekt(store, ["d2"], use_pckey=False)
    write = intents.record(store, "tok", "EKT", 1, prepared.changes, {})
    data = prepared.changes.to_json()
    data["device_keys"] = [row[:3] for row in data["device_keys"]]  # an intent of schema 7: three fields
    intents.commit(store, intents.PendingWrite(write.counter, write.token, write.kind, write.started,
                                               DeviceKeyChanges.from_json(json.loads(json.dumps(data))), {}), "test")
    _check_okt_against_device_keys(store)


def test_the_material_is_never_in_the_database_in_clear(store: KmsStore, tmp_path: Path) -> None:
    csns = {d.name: d.csn for d in store.drives()}
    secrets = []
    for name, csn in csns.items():
        for key_id, key in store.device_keys(name, 5):
            secrets += [envelope.media_wrap_key(key), envelope.clear_mac(key, csn, key_id)]
    store.close()
    data = b"".join(p.read_bytes() for p in (tmp_path / "kms").glob(DB_NAME + "*"))
    assert len(secrets) == 10 and [s for s in secrets if s in data] == []
