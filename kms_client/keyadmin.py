"""The database key, the backup key and the KMS ID (seed, Chapter 2: set_dbkey, set_backupkey,
view_backup_key, set_kmsid).

Changing the database key re-encrypts every stored key in one transaction. When the key
lives in a file (STORE/dbkey, or the file named by --dbkey-file), the new key is written
beside it (``NAME.new``) before the transaction and renamed over it after; a crash in
between is finished the next time the store is opened, so nothing is ever left sealed
under a key that is not on disk. When it came from $T10K_DBKEY or a prompt, no file is
written: the operator, who typed the new key, gives it from then on.
"""

from __future__ import annotations

import os

from protocol import envelope
from protocol.constants import KMS_ID_SIZE

from .errors import StoreError
from .migrations import OKT_MATERIAL_AD
from .store import KmsStore
from .storefiles import pending_path, write_dbkey_file

#: (table, key column, sealed column, associated-data prefix, how the AD suffix is made)
_SEALED = (
    ("drives", "csn", "pckey_sealed", b"pckey:"),
    ("device_keys", "device_key_id", "key_sealed", b"device_key:"),
    ("device_keys", "device_key_id", "okt_sealed", OKT_MATERIAL_AD),
    ("keys", "key_id", "key_sealed", b"media_key:"),
)
_META = (("dbkey_check", b"meta:check"), ("audit_key", b"meta:audit_key"), ("backup_key", b"meta:backup_key"),
         ("kms_signing_key", b"meta:kms_signing_key"))


def set_dbkey(store: KmsStore, new: bytes) -> int:
    """Re-encrypt every stored key under ``new``; returns how many values were re-sealed."""
    if len(new) != 32:
        raise StoreError("a database key is 32 octets (64 hexadecimal characters)")
    if store._conn.execute("SELECT 1 FROM pending_writes").fetchone():
        raise StoreError("a token write is still unsettled: run 't10k kms reconcile' before changing the database key")
    old = store._dbkey
    pending = None if store.dbkey_path is None else pending_path(store.dbkey_path)
    if pending is not None:
        write_dbkey_file(pending, new)
    count = 0
    with store.transaction() as conn:
        for table, key_col, sealed_col, prefix in _SEALED:
            for key_value, sealed in conn.execute(f"SELECT {key_col}, {sealed_col} FROM {table}").fetchall():
                ad = prefix + bytes(key_value)
                plain = envelope.unseal(old, sealed, ad, f"{table} entry")
                conn.execute(f"UPDATE {table} SET {sealed_col}=? WHERE {key_col}=?",
                             (envelope.seal(new, plain, ad), key_value))
                count += 1
        for name, sealed in conn.execute("SELECT name, secret_sealed FROM tokens").fetchall():
            ad = b"token_secret:" + name.encode()
            conn.execute("UPDATE tokens SET secret_sealed=? WHERE name=?",
                         (envelope.seal(new, envelope.unseal(old, sealed, ad, "token secret"), ad), name))
            count += 1
        for name, ad in _META:
            row = conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
            if row is not None:
                conn.execute("UPDATE meta SET value=? WHERE name=?",
                             (envelope.seal(new, envelope.unseal(old, row[0], ad, name), ad), name))
                count += 1
        store._dbkey = new  # the audit record below is made under the new key's audit key (unchanged)
        store.audit("set_dbkey", {"resealed": count})
    if pending is not None and store.dbkey_path is not None:
        os.replace(pending, store.dbkey_path)
    return count


def set_backupkey(store: KmsStore, key: bytes) -> None:
    """Later backups are encrypted with this key; earlier ones keep theirs (keep both safe)."""
    if len(key) != 32:
        raise StoreError("a backup key is 32 octets (64 hexadecimal characters)")
    with store.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('backup_key', ?)",
                     (envelope.seal(store._dbkey, key, b"meta:backup_key"),))
        store.audit("set_backupkey", {})


def view_backupkey_quietly(store: KmsStore) -> bytes:
    """The backup key, for the backup code itself (not an operator viewing it)."""
    row = store._conn.execute("SELECT value FROM meta WHERE name='backup_key'").fetchone()
    if row is None:
        raise StoreError("no backup key is set: 't10k kms set-backupkey' sets one")
    return store._unseal(row[0], b"meta:backup_key", "backup key")


def view_backupkey(store: KmsStore) -> bytes:
    key = view_backupkey_quietly(store)
    with store.transaction():
        store.audit("view_backupkey", {})
    return key


def set_kmsid(store: KmsStore, kms_id: bytes) -> None:
    """Key IDs made from now on carry this KMS ID (existing keys keep theirs)."""
    if len(kms_id) != KMS_ID_SIZE:
        raise StoreError(f"a KMS ID is {KMS_ID_SIZE} octets (8 hexadecimal characters)")
    with store.transaction() as conn:
        old = store.kms_id
        conn.execute("UPDATE meta SET value=? WHERE name='kms_id'", (kms_id,))
        store.audit("set_kmsid", {"from": old.hex(), "to": kms_id.hex()})
