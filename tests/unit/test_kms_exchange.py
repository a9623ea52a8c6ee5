"""Key export to XML and text, import into another KMS, duplicates refused."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kms_client.errors import RuleViolation, StoreError
from kms_client.exchange import export_keys, import_keys, read_export
from kms_client.store import KmsStore
from protocol.ids import split_key_id


@pytest.fixture
def two(tmp_path: Path) -> tuple[KmsStore, KmsStore]:
    a = KmsStore.create(tmp_path / "a", dbkey=os.urandom(32), kms_id=b"\xaa\xaa\xaa\xaa")
    b = KmsStore.create(tmp_path / "b", dbkey=os.urandom(32), kms_id=b"\xbb\xbb\xbb\xbb")
    return a, b


def test_export_then_import_into_another_kms(two: tuple[KmsStore, KmsStore], tmp_path: Path) -> None:
    a, b = two
    keys = [a.create_key("tokyo 2007"), a.create_key("london 2007")]
    assert export_keys(a, keys, tmp_path / "k.xml", tmp_path / "k.txt") == 2
    assert oct((tmp_path / "k.xml").stat().st_mode & 0o777) == "0o600"
    assert [k.description for k in read_export(tmp_path / "k.xml")] == ["tokyo 2007", "london 2007"]
    assert a.key_value(keys[0]).hex() in (tmp_path / "k.txt").read_text()
    assert import_keys(b, tmp_path / "k.xml") == keys
    assert [b.key_value(k) for k in keys] == [a.key_value(k) for k in keys]
    assert split_key_id(b.create_key())[0] == b"\xbb\xbb\xbb\xbb"  # its own keys keep its own KMS ID
    with pytest.raises(RuleViolation, match="already present"):
        import_keys(b, tmp_path / "k.xml")
    assert [r.action for r in b.audit_records()][-2] == "import_keys"


def test_an_export_never_overwrites_without_force(two: tuple[KmsStore, KmsStore], tmp_path: Path) -> None:
    a, _ = two
    k = a.create_key()
    (tmp_path / "k.xml").write_text("precious")
    with pytest.raises(StoreError, match="k.xml exists .* without --force"):
        export_keys(a, [k], tmp_path / "k.xml")
    assert (tmp_path / "k.xml").read_text() == "precious"
    export_keys(a, [k], tmp_path / "k.xml", force=True)
    assert "MediaKeyExport" in (tmp_path / "k.xml").read_text()
    assert (tmp_path / "k.xml").stat().st_mode & 0o777 == 0o600


def test_importing_our_own_key_back_never_reuses_its_ordinal(two: tuple[KmsStore, KmsStore], tmp_path: Path) -> None:
    a, b = two
    keys = [b.create_key() for _ in range(3)]
    export_keys(b, keys, tmp_path / "k.xml")
    c = KmsStore.create(tmp_path / "c", dbkey=os.urandom(32), kms_id=b"\xbb\xbb\xbb\xbb")  # restored elsewhere
    import_keys(c, tmp_path / "k.xml")
    assert split_key_id(c.create_key())[1] == 4


@pytest.mark.parametrize(("content", "message"), [
    ("<nope/>", "not a key export"),
    ("<MediaKeyExport/>", "holds no keys"),
    ('<MediaKeyExport><Key id="zz">00</Key></MediaKeyExport>', "hexadecimal"),
    ('<MediaKeyExport><Key id="0011223344556677">00</Key></MediaKeyExport>', "64"),
    ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
     '<MediaKeyExport><Key id="0011223344556677">&b;</Key></MediaKeyExport>', "not a key export"),
    ("not xml at all", "not a key export"),
])
def test_bad_exports_are_refused_and_nothing_is_imported(two: tuple[KmsStore, KmsStore], tmp_path: Path,
                                                         content: str, message: str) -> None:
    _, b = two
    (tmp_path / "bad.xml").write_text(content)
    with pytest.raises(StoreError, match=message):
        import_keys(b, tmp_path / "bad.xml")
    assert b.key_ids() == []
