"""``t10k kms list`` and ``t10k kms show``: every entity, and each pool's mapping with its timestamp."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kms_client.builders import build_ekt
from kms_client.store import KmsStore
from lab.cli import main
from protocol.manufacturing import make_drives
from protocol.timestamps import format_timestamp


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x09")
    for name, made in zip(["d0", "d1", "d2"], make_drives(3), strict=True):
        s.add_drive(name, made.csn, made.pckey, made.model, ip="127.0.0.101")
    build_ekt(s, ["d0", "d1"], use_pckey=True)
    s.add_token("tok", "127.0.0.21", 7020)
    s.create_key_set("KS1")
    s.create_key_set("KS2")
    k1, k2, k3 = s.create_key("year one"), s.create_key(), s.create_key("spare")
    s.add_key_to_set("KS1", k1)
    s.add_key_to_set("KS1", k2)
    s.add_key_to_set("KS2", k2)
    with s.transaction() as conn:
        conn.execute("INSERT INTO inactive_keys VALUES (?)", (k3,))  # as the two-person rule leaves it
    s.create_pool("P")
    s.create_pool("EMPTY")
    s.add_drive_to_pool("P", "d0")
    s.add_drive_to_pool("P", "d1")
    s.set_mapping("P", ["KS1"], k1)
    return s


def run(capsys: pytest.CaptureFixture[str], store: KmsStore, *args: str, rc: int = 0) -> tuple[str, str]:
    code = main(["kms", *args, "--store", str(store.directory)])
    out, err = capsys.readouterr()
    assert code == rc, err
    return out, err


def test_list_covers_every_entity_and_each_mapping(store: KmsStore, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(run(capsys, store, "list", "--json")[0])
    m = store.mapping("P")
    assert [d["name"] for d in data["drives"]] == ["d0", "d1", "d2"]
    assert [d["enabled"] for d in data["drives"]] == [True, True, False]
    assert [t["name"] for t in data["tokens"]] == ["tok"]
    keys = {k["key_id"]: k for k in data["keys"]}
    assert len(keys) == 3
    assert [(k["state"], k["description"], k["key_sets"]) for k in data["keys"]] == [
        ("active", "year one", ["KS1"]), ("active", "", ["KS1", "KS2"]), ("inactive", "spare", [])]
    assert {ks["name"]: (len(ks["keys"]), ks["mapped_to"]) for ks in data["key_sets"]} == {
        "KS1": (2, ["P"]), "KS2": (1, [])}
    pools = {p["name"]: p for p in data["pools"]}
    assert pools["EMPTY"] == {"name": "EMPTY", "description": "", "drives": [], "mapping": None}
    assert pools["P"]["drives"] == ["d0", "d1"]
    assert pools["P"]["mapping"] == {"key_sets": ["KS1"], "write_key_id": m.write_key_id.hex(),
                                     "key_ids": [k.hex() for k in m.key_ids], "timestamp": m.timestamp,
                                     "time": format_timestamp(m.timestamp)}
    text = run(capsys, store, "list")[0]
    for expected in ("d2", "tok", "inactive", "year one", "KS2", "EMPTY", "no mapping yet",
                     f"mapping of {format_timestamp(m.timestamp)}", m.write_key_id.hex()):
        assert expected in text


def test_show_prints_one_entity_whole(store: KmsStore, capsys: pytest.CaptureFixture[str]) -> None:
    listed = json.loads(run(capsys, store, "list", "--json")[0])
    for kind, plural, field in (("drive", "drives", "name"), ("token", "tokens", "name"), ("key", "keys", "key_id"),
                                ("key-set", "key_sets", "name"), ("pool", "pools", "name")):
        for entity in listed[plural]:
            shown = json.loads(run(capsys, store, "show", kind, entity[field], "--json")[0])
            assert shown == entity
            text = run(capsys, store, "show", kind, entity[field])[0]
            assert text.startswith(f"{kind} {entity[field]}")
    text = run(capsys, store, "show", "pool", "P")[0]
    assert "d0, d1" in text and format_timestamp(store.mapping("P").timestamp) in text


def test_show_names_what_is_missing(store: KmsStore, capsys: pytest.CaptureFixture[str]) -> None:
    _, err = run(capsys, store, "show", "pool", "NOPE", rc=1)
    assert err.count("\n") == 1 and "no pool 'NOPE'" in err and "t10k kms list" in err
    _, err = run(capsys, store, "show", "key", "zz", rc=1)
    assert err.count("\n") == 1 and "Traceback" not in err
