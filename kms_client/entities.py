"""Deleting and describing entities, under the seed's limitations 1-3 and 9.

Only a drive created in error may be deleted; keys, key sets, pools and tokens cannot be.
Names are permanent. Descriptions hold up to 256 characters and can be edited only while
the entity is unmapped: a key in no key set, a key set or drive in no pool mapping.
"""

from __future__ import annotations

from pathlib import Path

from protocol.manufacturing import ManufacturedDrive, parse_manufacturing

from .errors import NotFound, RuleViolation, StoreError
from .store import KmsStore

MAX_DESCRIPTION = 256
_TABLES = {"drive": ("drives", "name"), "key": ("keys", "key_id"), "key-set": ("key_sets", "name"),
           "pool": ("pools", "name"), "token": ("tokens", "name")}


def delete(store: KmsStore, kind: str, name: str | bytes) -> None:
    if kind != "drive":
        raise RuleViolation("only a drive created in error may be deleted (limitation 1)",
                            f"a {kind} cannot be deleted", "Plan entities before entering them; to retire a key, "
                            "remove it from every key set and mark its description (limitation 10).")
    drive = store.drive(str(name))
    if drive.enabled or drive.pool is not None:
        raise RuleViolation("only a drive created in error may be deleted (limitation 1)",
                            f"drive {drive.name!r} has been enabled or pooled", "Reset it instead; its record stays.")
    with store.transaction() as conn:
        conn.execute("DELETE FROM device_keys WHERE drive=?", (drive.name,))
        conn.execute("DELETE FROM drives WHERE name=?", (drive.name,))
        store.audit("delete_drive", {"drive": drive.name, "csn": drive.csn.hex()})


def _mapped(store: KmsStore, kind: str, name: str | bytes) -> str | None:
    conn = store._conn
    if kind == "key":
        row = conn.execute("SELECT key_set FROM key_set_members WHERE key_id=? LIMIT 1", (name,)).fetchone()
        return f"it is in key set {row[0]!r}" if row else None
    if kind == "key-set":
        row = conn.execute("SELECT pool FROM mapping_key_sets WHERE key_set=? LIMIT 1", (name,)).fetchone()
        return f"it is mapped to pool {row[0]!r}" if row else None
    if kind == "drive":
        row = conn.execute("SELECT pool FROM pool_drives WHERE drive=?", (name,)).fetchone()
        return f"it is in pool {row[0]!r}" if row else None
    return None


def describe(store: KmsStore, kind: str, name: str | bytes, description: str) -> None:
    if kind not in _TABLES:
        raise NotFound(f"no entity kind {kind!r} (one of {', '.join(_TABLES)})")
    if len(description) > MAX_DESCRIPTION:
        raise RuleViolation("descriptions hold up to 256 characters (limitation 3)",
                            f"the description has {len(description)}", "Shorten it.")
    table, column = _TABLES[kind]
    if store._conn.execute(f"SELECT 1 FROM {table} WHERE {column}=?", (name,)).fetchone() is None:
        shown = name.hex() if isinstance(name, bytes) else repr(name)
        raise NotFound(f"no {kind} {shown}")
    mapped = _mapped(store, kind, name)
    if mapped:
        raise RuleViolation("a description is editable only while the entity is unmapped (limitation 2)",
                            f"the {kind} cannot be described now: {mapped}", "Unmap it first, or leave it as it is.")
    with store.transaction() as conn:
        conn.execute(f"UPDATE {table} SET description=? WHERE {column}=?", (description, name))
        shown = name.hex() if isinstance(name, bytes) else name
        store.audit("describe", {"kind": kind, "name": shown, "description": description})


def remove_key_from_set(store: KmsStore, key_set: str, key_id: bytes) -> None:
    """The seed's rotation step 4: only from a key set that is not mapped (limitation 9)."""
    from . import rules

    with store.transaction() as conn:
        pools = [r[0] for r in conn.execute("SELECT pool FROM mapping_key_sets WHERE key_set=?", (key_set,))]
        rules.check_key_set_unmapped(key_set, pools)
        if conn.execute("DELETE FROM key_set_members WHERE key_set=? AND key_id=?", (key_set, key_id)).rowcount != 1:
            raise NotFound(f"key {key_id.hex()} is not in key set {key_set!r}")
        store.audit("remove_key_from_set", {"key_set": key_set, "key_id": key_id.hex()})


def import_drive(store: KmsStore, manufacturing: Path, csn: bytes, name: str, ip: str = "") -> ManufacturedDrive:
    """One drive's CSN and PCkey from a manufacturing file (the seed's CD), one at a time (limitation 4)."""
    try:
        drives = parse_manufacturing(manufacturing.read_text())
    except UnicodeDecodeError:
        raise StoreError(f"manufacturing file {manufacturing} is damaged (not text): ask for the drives' "
                         f"manufacturing data (CD) again") from None
    except OSError as exc:
        raise NotFound(f"cannot read manufacturing file {manufacturing}: {exc.strerror}") from None
    except ValueError as exc:
        raise StoreError(f"manufacturing file {manufacturing}: {exc}") from None
    made = next((d for d in drives if d.csn == csn), None)
    if made is None:
        raise NotFound(f"{manufacturing} has no drive with CSN {csn.hex()}")
    store.add_drive(name, made.csn, made.pckey, made.model, ip)
    return made
