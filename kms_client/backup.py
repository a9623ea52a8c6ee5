"""Database backups, encrypted with the backup key, and restores (seed: run_restore_db).

A backup is the whole store (a consistent SQLite snapshot) together with its database
key, encrypted with AES-256-GCM under the backup key and bound to its dump ID; restoring
it onto any KMS therefore brings the KMS ID and the database key along, as the seed says.
A wrong backup key or a damaged file fails authentication before anything is touched.
The restored store's database key goes where the operator says (--dbkey-file), else where
the backed-up store kept it (the key file it names, or STORE/dbkey); when $T10K_DBKEY
already holds it, nowhere.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging
import os
import sqlite3
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.timestamps import format_timestamp, now_us

from .errors import NotFound, StoreError
from .store import DB_NAME, KmsStore
from .storefiles import (
    DbKeySource,
    default_dbkey_path,
    pending_path,
    record_dbkey_file,
    recorded_dbkey_file,
    write_dbkey_file,
)

log = logging.getLogger("t10k.kms.backup")
MAGIC = b"T10KBAK1"
SUFFIX = ".t10kbak"


@dataclass(frozen=True)
class BackupInfo:
    dump_id: str
    taken_at: int
    reason: str
    kms_id: str
    size: int

    def to_json(self) -> dict[str, object]:
        return {"dump_id": self.dump_id, "time": format_timestamp(self.taken_at), "reason": self.reason,
                "kms_id": self.kms_id, "size": self.size}


def backup_dir(store_dir: Path) -> Path:
    return store_dir / "backups"


def _header(info: BackupInfo) -> bytes:
    meta = json.dumps({"dump_id": info.dump_id, "taken_at": info.taken_at, "reason": info.reason,
                       "kms_id": info.kms_id}).encode()
    return MAGIC + struct.pack(">I", len(meta)) + meta


def take_backup(store: KmsStore, reason: str) -> BackupInfo:
    """Write one encrypted backup set; needs the backup key (t10k kms set-backupkey)."""
    from .keyadmin import view_backupkey_quietly

    key = view_backupkey_quietly(store)
    with tempfile.TemporaryDirectory() as tmp:
        snapshot = sqlite3.connect(Path(tmp) / "snapshot.sqlite3")
        store._conn.backup(snapshot)  # a consistent copy, even while in use
        snapshot.close()
        database = (Path(tmp) / "snapshot.sqlite3").read_bytes()
    taken = now_us()
    dump_id = dt.datetime.fromtimestamp(taken / 1e6, dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    payload = json.dumps({"dbkey": store._dbkey.hex()}).encode()
    plain = struct.pack(">I", len(payload)) + payload + database
    info = BackupInfo(dump_id, taken, reason, store.kms_id.hex(), len(plain))
    header = _header(info)
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plain, header)
    directory = backup_dir(store.directory)
    directory.mkdir(exist_ok=True)
    path = directory / f"{dump_id}{SUFFIX}"
    tmp_path = path.with_suffix(".tmp")
    with open(tmp_path, "wb") as fh:
        fh.write(header + nonce + sealed)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp_path, path)
    with store.transaction():
        store.audit("backup", {"dump_id": dump_id, "reason": reason})
    return info


def backup_after(store: KmsStore, reason: str) -> None:
    """The automatic backup after a token write: skipped, with a warning, until a backup key is set."""
    try:
        take_backup(store, reason)
    except StoreError as exc:
        log.warning("no backup taken after %s: %s", reason, exc)


def _read(path: Path) -> tuple[BackupInfo, bytes, bytes, bytes]:
    data = path.read_bytes()
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
        raise StoreError(f"{path.name} is not a t10k backup")
    (n,) = struct.unpack(">I", data[8:12])
    try:
        meta = json.loads(data[12 : 12 + n])
        info = BackupInfo(meta["dump_id"], int(meta["taken_at"]), meta["reason"], meta["kms_id"], 0)
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"{path.name} has a damaged header") from None
    header = data[: 12 + n]
    return info, header, data[12 + n : 24 + n], data[24 + n :]


def list_backups(store_dir: Path) -> list[BackupInfo]:
    """The dump IDs a restore can name, oldest first (no key needed)."""
    found = []
    for path in sorted(backup_dir(store_dir).glob(f"*{SUFFIX}")):
        try:
            info, _, _, sealed = _read(path)
        except StoreError as exc:
            log.warning("%s", exc)
            continue
        found.append(BackupInfo(info.dump_id, info.taken_at, info.reason, info.kms_id, len(sealed)))
    return found


def _keyfile_for(store_dir: Path, dump_id: str, dbkey: bytes, tmp_db: Path, given: DbKeySource) -> Path | None:
    """Where the restored store's database key goes (None: $T10K_DBKEY holds it); the restored
    database is made to name that file. Refuses, changing nothing, what would leave it unopenable."""
    if given.file is None:
        env = given.env_key()
        if env is not None:
            if hmac.compare_digest(env, dbkey):
                return None
            raise StoreError(f"$T10K_DBKEY is not the database key of backup {dump_id}: unset it to keep the "
                             f"backup's key in a file, or give --dbkey-file PATH for it")
    conn = sqlite3.connect(tmp_db)
    try:
        keyfile = given.file or recorded_dbkey_file(conn) or default_dbkey_path(store_dir)
        if not keyfile.parent.is_dir():
            raise StoreError(f"backup {dump_id} keeps its database key in {keyfile}, and {keyfile.parent} is not a "
                             f"directory here: give --dbkey-file PATH for the restored store's database key")
        with conn:
            record_dbkey_file(conn, store_dir, keyfile)
    finally:
        conn.close()
    return keyfile


def restore(store_dir: Path, backup_key: bytes, dump_id: str = "latest", *, source: Path | None = None,
            dbkey_from: DbKeySource | None = None) -> BackupInfo:
    """Replace the store in ``store_dir`` by a backup (from ``source``, default its own backups).
    Authenticated first: a wrong key or a damaged file changes nothing."""
    backups = list_backups(source or store_dir)
    if not backups:
        raise NotFound(f"no backups in {backup_dir(source or store_dir)}")
    chosen = backups[-1] if dump_id == "latest" else next((b for b in backups if b.dump_id == dump_id), None)
    if chosen is None:
        raise NotFound(f"no backup with dump ID {dump_id}; 't10k kms restore list' shows them")
    info, header, nonce, sealed = _read(backup_dir(source or store_dir) / f"{chosen.dump_id}{SUFFIX}")
    try:
        plain = AESGCM(backup_key).decrypt(nonce, sealed, header)
    except InvalidTag:
        raise StoreError(f"backup {chosen.dump_id} does not decrypt: wrong backup key, or the file is damaged") \
            from None
    (n,) = struct.unpack(">I", plain[:4])
    dbkey = bytes.fromhex(json.loads(plain[4 : 4 + n])["dbkey"])
    database = plain[4 + n :]
    store_dir.mkdir(parents=True, exist_ok=True)
    db_path = store_dir / DB_NAME
    tmp_db = db_path.with_suffix(".restore")
    with open(tmp_db, "wb") as fh:
        fh.write(database)
        fh.flush()
        os.fsync(fh.fileno())
    dbkey_source = dbkey_from or DbKeySource()
    try:
        keyfile = _keyfile_for(store_dir, chosen.dump_id, dbkey, tmp_db, dbkey_source)
    except BaseException:
        tmp_db.unlink(missing_ok=True)
        raise
    # The database key first (beside the old one), then the database: a crash in between is
    # finished at the next open (see storefiles._current_dbkey).
    pending = None if keyfile is None else pending_path(keyfile)
    if pending is not None:
        write_dbkey_file(pending, dbkey)
    if db_path.exists():  # fold the WAL into the old file so no stale WAL meets the new one
        try:
            old = sqlite3.connect(db_path)
            old.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            old.close()
        except sqlite3.DatabaseError:
            pass  # a damaged store: it is being replaced whole
    for suffix in ("-wal", "-shm"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    os.replace(tmp_db, db_path)
    if pending is not None and keyfile is not None:
        os.replace(pending, keyfile)
    restored = KmsStore.open(store_dir, dbkey=DbKeySource(keyfile, dbkey_source.environ, interactive=False))
    with restored.transaction():
        restored.audit("restore", {"dump_id": chosen.dump_id, "kms_id": restored.kms_id.hex()})
    restored.close()
    return info
