"""Key sharing between KMSes (seed, "Key Sharing"): export keys to XML or text, import them.

The export holds key values in plaintext, as the seed's does: it exists to carry keys to
another KMS. It is written only on request, never over an existing file without --force, readable by its
owner only, and recorded in the audit trail. Import refuses a key ID already present
(key IDs are unique across every KMS) and is all or nothing. Imported files are parsed
with defusedxml: they come from other organisations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, tostring

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from protocol.constants import KEY_ID_SIZE, KMS_ID_SIZE, MEDIA_KEY_SIZE
from protocol.timestamps import format_timestamp, now_us

from .errors import RuleViolation, StoreError
from .files import refuse_existing, write_key_file
from .store import KmsStore

WARNING = "plaintext media keys: keep this file as securely as the keys themselves"


@dataclass(frozen=True)
class ExportedKey:
    key_id: bytes
    value: bytes
    description: str


def export_keys(store: KmsStore, key_ids: list[bytes], xml_path: Path, text_path: Path | None = None, *,
                force: bool = False) -> int:
    if not key_ids:
        raise StoreError("name the keys to export (or --all)")
    for path in (xml_path, text_path):
        if path is not None:
            refuse_existing(path, force=force, what="a key export")
    rows = {bytes(r[0]): r[1] for r in store._conn.execute("SELECT key_id, description FROM keys")}
    missing = [k.hex() for k in key_ids if k not in rows]
    if missing:
        raise StoreError(f"no key with ID {', '.join(missing)}")
    keys = [ExportedKey(k, store.key_value(k), rows[k]) for k in key_ids]
    root = Element("MediaKeyExport", kmsId=store.kms_id.hex(), exported=format_timestamp(now_us()), warning=WARNING)
    for k in keys:
        SubElement(root, "Key", id=k.key_id.hex(), description=k.description).text = k.value.hex()
    write_key_file(xml_path, b'<?xml version="1.0" encoding="UTF-8"?>\n' + tostring(root, encoding="utf-8") + b"\n",
                   force=force, what="a key export")
    if text_path is not None:
        lines = [f"# {WARNING}", "# key ID          value                                                            description"]
        lines += [f"{k.key_id.hex()}  {k.value.hex()}  {k.description}" for k in keys]
        write_key_file(text_path, ("\n".join(lines) + "\n").encode(), force=force, what="a key export")
    with store.transaction():
        store.audit("export_keys", {"key_ids": [k.hex() for k in key_ids], "file": str(xml_path)})
    return len(keys)


def read_export(path: Path) -> list[ExportedKey]:
    try:
        root = SafeET.parse(path).getroot()
    except FileNotFoundError:
        raise StoreError(f"{path} does not exist") from None
    except (SafeET.ParseError, DefusedXmlException) as exc:
        raise StoreError(f"{path} is not a key export: {exc}") from None
    if root.tag != "MediaKeyExport":
        raise StoreError(f"{path} is not a key export (root element {root.tag!r})")
    keys = []
    for i, el in enumerate(root.findall("Key"), start=1):
        try:
            key_id = bytes.fromhex(el.get("id", ""))
            value = bytes.fromhex((el.text or "").strip())
        except ValueError:
            raise StoreError(f"{path}, key {i}: the ID and value must be hexadecimal") from None
        description = el.get("description", "")
        if len(key_id) != KEY_ID_SIZE or len(value) != MEDIA_KEY_SIZE:
            raise StoreError(f"{path}, key {i}: a key ID is 16 hex digits and a value 64")
        if len(description) > 256:
            raise StoreError(f"{path}, key {i}: the description is over 256 characters")
        keys.append(ExportedKey(key_id, value, description))
    if not keys:
        raise StoreError(f"{path} holds no keys")
    return keys


def import_keys(store: KmsStore, path: Path) -> list[bytes]:
    """Add every key of an export, or none: a key ID already present is refused."""
    keys = read_export(path)
    present = {bytes(r[0]) for r in store._conn.execute("SELECT key_id FROM keys")}
    dupes = [k.key_id.hex() for k in keys if k.key_id in present]
    if dupes or len({k.key_id for k in keys}) != len(keys):
        raise RuleViolation("key IDs are unique across every KMS", f"key ID(s) {', '.join(dupes) or 'repeated'} "
                            f"already present", "Import only keys this KMS does not hold.")
    with store.transaction() as conn:
        ours = store.kms_id
        for k in keys:
            conn.execute("INSERT INTO keys VALUES (?,?,?,?)", (
                k.key_id, store._seal(k.value, b"media_key:" + k.key_id), k.description, now_us()))
            if k.key_id[:KMS_ID_SIZE] == ours:  # one of our own, back again: never reuse its ordinal
                (ordinal,) = struct.unpack(">I", k.key_id[KMS_ID_SIZE:])
                conn.execute("UPDATE meta SET value=MAX(value, ?) WHERE name='next_ordinal'", (ordinal + 1,))
        store.audit("import_keys", {"key_ids": [k.key_id.hex() for k in keys], "file": str(path)})
    return [k.key_id for k in keys]
