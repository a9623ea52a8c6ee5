"""The KMS database: SQLite, every key sealed under the database key.

Plain key material never reaches the file: PCkeys, device keys, media keys and
token secrets are AES-256-GCM sealed, bound to the row they belong to.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from protocol import envelope
from protocol.constants import KMS_ID_SIZE, MEDIA_KEY_SIZE, TOKEN_SECRET_SIZE
from protocol.errors import UnwrapError
from protocol.ids import make_key_id
from protocol.timestamps import now_us

from . import audit, migrations, rules
from .errors import NotFound, RuleViolation, StoreError
from .storefiles import (  # noqa: F401  (parse_db_key, DB_NAME, DbKeySource...: re-exported)
    _CHECK,
    DB_NAME,
    DBKEY_NAME,
    DbKeyMissing,
    DbKeySource,
    _check_wal,
    _connect,
    _current_dbkey,
    damaged,
    default_dbkey_path,
    parse_db_key,
    record_dbkey_file,
    recorded_dbkey_file,
    resolve_dbkey,
    write_dbkey_file,
)

#: The base schema below is version 1; kms_client/migrations.py takes it to the latest.
BASE_SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value ANY) STRICT;
CREATE TABLE drives (
    name TEXT PRIMARY KEY, csn BLOB NOT NULL UNIQUE, model TEXT NOT NULL,
    pckey_sealed BLOB NOT NULL, description TEXT NOT NULL DEFAULT '') STRICT;
CREATE TABLE device_keys (
    device_key_id BLOB PRIMARY KEY, drive TEXT NOT NULL REFERENCES drives(name),
    key_sealed BLOB NOT NULL, timestamp INTEGER NOT NULL, via_pckey INTEGER NOT NULL) STRICT;
CREATE INDEX device_keys_by_drive ON device_keys(drive, timestamp);
CREATE TABLE keys (
    key_id BLOB PRIMARY KEY, key_sealed BLOB NOT NULL, description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL) STRICT;
CREATE TABLE key_sets (name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '') STRICT;
CREATE TABLE key_set_members (
    key_set TEXT NOT NULL REFERENCES key_sets(name), key_id BLOB NOT NULL REFERENCES keys(key_id),
    PRIMARY KEY (key_set, key_id)) STRICT;
CREATE TABLE pools (name TEXT PRIMARY KEY, description TEXT NOT NULL DEFAULT '') STRICT;
CREATE TABLE pool_drives (
    pool TEXT NOT NULL REFERENCES pools(name), drive TEXT NOT NULL UNIQUE REFERENCES drives(name),
    PRIMARY KEY (pool, drive)) STRICT;
CREATE TABLE mappings (
    pool TEXT PRIMARY KEY REFERENCES pools(name), write_key_id BLOB NOT NULL, timestamp INTEGER NOT NULL) STRICT;
CREATE TABLE mapping_key_sets (
    pool TEXT NOT NULL REFERENCES mappings(pool), key_set TEXT NOT NULL REFERENCES key_sets(name),
    PRIMARY KEY (pool, key_set)) STRICT;
CREATE TABLE tokens (
    name TEXT PRIMARY KEY, ip TEXT NOT NULL, port INTEGER NOT NULL, secret_sealed BLOB NOT NULL,
    counter INTEGER NOT NULL DEFAULT 0) STRICT;
"""


@dataclass(frozen=True)
class DriveRecord:
    name: str
    csn: bytes
    model: str
    device_key_id: bytes | None
    device_key_timestamp: int
    pool: str | None

    @property
    def enabled(self) -> bool:
        return self.device_key_id is not None


@dataclass(frozen=True)
class Mapping:
    pool: str
    key_sets: tuple[str, ...]
    write_key_id: bytes
    timestamp: int
    key_ids: tuple[bytes, ...]  # write key first


@dataclass(frozen=True)
class OktDrive:
    """A drive as an OKT needs it, unsealed (in memory only): its PCkey, and of its newest
    device keys (newest first) the ID, the media-key wrapping key and the clear authorisation."""

    name: str
    csn: bytes
    pckey: bytes
    device_keys: list[tuple[bytes, bytes, bytes]]  # (device_key_id, media_wrap_key, clear_mac)


@dataclass(frozen=True)
class NewDeviceKey:
    key_id: bytes
    drive: str
    sealed: bytes  # under the database key, bound to the key ID: never the plain key
    #: Its OKT material, sealed likewise (migrations.seal_okt_material); b"": made when stored.
    okt_sealed: bytes = b""


@dataclass(frozen=True)
class DeviceKeyChanges:
    """The device keys an EKT adds to the store once the token has them (empty for an OKT)."""

    timestamp: int = 0
    next_ordinal: int = 0
    device_keys: tuple[NewDeviceKey, ...] = ()
    via_pckey: bool = False

    def to_json(self) -> dict[str, object]:
        return {"timestamp": self.timestamp, "next_ordinal": self.next_ordinal, "via_pckey": self.via_pckey,
                "device_keys": [[k.key_id.hex(), k.drive, k.sealed.hex(), k.okt_sealed.hex()]
                                for k in self.device_keys]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DeviceKeyChanges:
        # An intent recorded before schema 8 has no OKT material: it is made when stored.
        return cls(int(data["timestamp"]), int(data["next_ordinal"]), tuple(
            NewDeviceKey(bytes.fromhex(k), d, bytes.fromhex(s), bytes.fromhex(o[0] if o else ""))
            for k, d, s, *o in data["device_keys"]), bool(data["via_pckey"]))


@dataclass(frozen=True)
class TokenRecord:
    name: str
    ip: str
    port: int


def default_operator() -> str:
    """Who the audit trail names until operator logins exist: $T10K_OPERATOR, else the OS user."""
    return os.environ.get("T10K_OPERATOR") or getpass.getuser()


class KmsStore:
    def __init__(self, conn: sqlite3.Connection, dbkey: bytes, directory: Path, operator: str | None = None,
                 dbkey_path: Path | None = None) -> None:
        self._conn = conn
        self._dbkey = dbkey  # also makes the sealer (below)
        self.directory = directory
        self.operator = operator or default_operator()
        #: The file holding the database key (set-dbkey writes the new one there); None: it came
        #: from $T10K_DBKEY or a prompt, and the operator keeps it.
        self.dbkey_path = dbkey_path

    # --- opening ----------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, dbkey: bytes, kms_id: bytes, operator: str | None = None,
               force: bool = False, dbkey_file: Path | None = None, keep_dbkey: bool = True) -> KmsStore:
        """A new store. Its database key is kept in ``dbkey_file`` (default STORE/dbkey; a file that
        already holds this very key is left as it is), or nowhere when ``keep_dbkey`` is false
        (the operator gives it as $T10K_DBKEY or at a prompt every time)."""
        if len(kms_id) != KMS_ID_SIZE:
            raise StoreError(f"a KMS ID is {KMS_ID_SIZE} octets (8 hex characters)")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / DB_NAME
        if path.exists():
            raise StoreError(f"a KMS store already exists in {directory}; use it, or choose another directory")
        keyfile = (dbkey_file or default_dbkey_path(directory)) if keep_dbkey else None
        if keyfile is not None:
            cls._keep_dbkey(keyfile, dbkey, force=force)
        conn = _connect(path)
        with conn:
            conn.executescript(_SCHEMA)
            conn.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("schema_version", BASE_SCHEMA_VERSION), ("kms_id", kms_id), ("next_ordinal", 1),
                ("last_timestamp", 0), ("dbkey_check", envelope.seal(dbkey, _CHECK, b"meta:check")),
            ])
            migrations.migrate(conn, dbkey, BASE_SCHEMA_VERSION)
            record_dbkey_file(conn, directory, keyfile)
        store = cls(conn, dbkey, directory, operator, keyfile)
        with store.transaction():
            store.audit("init", {"kms_id": kms_id.hex()})
        return store

    @staticmethod
    def _keep_dbkey(keyfile: Path, dbkey: bytes, *, force: bool) -> None:
        if keyfile.exists():
            try:
                if parse_db_key(keyfile.read_text()) == dbkey:
                    return  # the operator made the key file first: it stays as it is
            except (OSError, UnicodeDecodeError, StoreError):
                pass
            if not force:
                raise StoreError(f"{keyfile} exists (a database key, maybe of a lost store): not overwriting it "
                                 f"without --force; or choose another directory")
        if not keyfile.parent.is_dir():
            raise StoreError(f"cannot keep the database key in {keyfile}: {keyfile.parent} is not a directory")
        write_dbkey_file(keyfile, dbkey)

    @classmethod
    def open(cls, directory: Path, *, operator: str | None = None, dbkey: DbKeySource | None = None) -> KmsStore:
        """Open a store, its database key found as ``dbkey`` says (storefiles.resolve_dbkey); a damaged
        database, WAL or key file is named, with the way out; a key found nowhere, with the ways."""
        path = directory / DB_NAME
        if not path.exists():
            raise StoreError(f"no KMS store in {directory}: run 't10k kms init --store {directory}' first")
        _check_wal(path, directory)
        try:
            conn = _connect(path)
            version = conn.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            check = conn.execute("SELECT value FROM meta WHERE name='dbkey_check'").fetchone()
            problems = [r[0] for r in conn.execute("PRAGMA quick_check(3)")]
            recorded = recorded_dbkey_file(conn)
        except sqlite3.DatabaseError as exc:
            raise damaged(path, f"is damaged or not a KMS store ({exc})", directory) from None
        if problems != ["ok"]:
            raise damaged(path, f"is damaged ({'; '.join(problems)})", directory)
        if check is None or not isinstance(check[0], bytes):
            raise damaged(path, "is not a KMS store (no database key check)", directory)
        if version is None or not BASE_SCHEMA_VERSION <= version[0] <= migrations.LATEST:
            raise StoreError(f"{path} has schema version {version and version[0]}; this build reads "
                             f"{BASE_SCHEMA_VERSION}..{migrations.LATEST}")
        try:
            found = _current_dbkey(directory, resolve_dbkey(directory, dbkey or DbKeySource(), recorded), check[0])
        except BaseException:
            conn.close()
            raise
        if version[0] < migrations.LATEST:
            try:
                with conn:
                    conn.execute("BEGIN IMMEDIATE")
                    migrations.migrate(conn, found.key, version[0])
            except (sqlite3.DatabaseError, UnwrapError) as exc:  # its schema and its version disagree, or a row is damaged
                raise damaged(path, f"cannot be upgraded from schema version {version[0]} ({exc})", directory) from None
        return cls(conn, found.key, directory, operator, found.path)

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One SQLite transaction: everything in it lands together or not at all."""
        if self._conn.in_transaction:
            yield self._conn
            return
        with self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            yield self._conn


    # --- audit ----------------------------------------------------------------

    def _audit_key(self) -> bytes:
        return self._unseal(self._meta("audit_key"), b"meta:audit_key", "audit key")  # type: ignore[arg-type]

    def audit(self, action: str, detail: dict[str, object]) -> None:
        """Record an action by this store's operator, in the current transaction."""
        audit.append(self._conn, self._audit_key(), self.operator, action, detail)

    def audit_records(self) -> list[audit.AuditRecord]:
        return audit.records(self._conn)

    def verify_audit(self) -> audit.AuditVerdict:
        return audit.verify(self._conn, self._audit_key())

    def _meta(self, name: str) -> object:
        return self._conn.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()[0]

    @property
    def _dbkey(self) -> bytes:
        return self._dbkey_value

    @_dbkey.setter
    def _dbkey(self, key: bytes) -> None:
        """The database key, and its sealer with it (set-dbkey changes both at once)."""
        self._dbkey_value = key
        self._sealer = envelope.Sealer(key)

    def _seal(self, plain: bytes, ad: bytes) -> bytes:
        return self._sealer.seal(plain, ad)

    def _unseal(self, sealed: bytes, ad: bytes, what: str) -> bytes:
        try:
            return self._sealer.unseal(sealed, ad, what)
        except UnwrapError as exc:
            raise StoreError(f"{what} in the store does not decrypt: {exc}") from None

    # --- identities and time -----------------------------------------------

    @property
    def kms_id(self) -> bytes:
        return bytes(self._meta("kms_id"))  # type: ignore[arg-type]

    def kms_signing_key(self) -> bytes:
        """The KMS's Ed25519 announcement key (private: it never leaves the store unsealed)."""
        return self._unseal(self._meta("kms_signing_key"), migrations.KMS_SIGNING_KEY_AD,  # type: ignore[arg-type]
                            "KMS signing key")

    def kms_public_key(self) -> bytes:
        """What every drive gets in its device-key package, to verify announcements with."""
        return envelope.public_key_of(self.kms_signing_key())

    def _reserved(self) -> tuple[int, int]:
        """(next free ordinal, last timestamp), counting what token writes in flight reserved."""
        row = self._conn.execute("SELECT MAX(reserved_ordinal), MAX(reserved_timestamp) FROM pending_writes").fetchone()
        ordinal = max(int(self._meta("next_ordinal")), row[0] or 0)  # type: ignore[arg-type]
        return ordinal, max(int(self._meta("last_timestamp")), row[1] or 0)  # type: ignore[arg-type]

    def _next_key_id(self, conn: sqlite3.Connection) -> bytes:
        ordinal = self._reserved()[0]
        conn.execute("UPDATE meta SET value=? WHERE name='next_ordinal'", (ordinal + 1,))
        return make_key_id(self.kms_id, ordinal)

    def _next_timestamp(self, conn: sqlite3.Connection) -> int:
        """Strictly increasing, so two applies in one microsecond still differ."""
        ts = max(now_us(), self._reserved()[1] + 1)
        conn.execute("UPDATE meta SET value=? WHERE name='last_timestamp'", (ts,))
        return ts

    # --- drives and device keys --------------------------------------------

    def add_drive(self, name: str, csn: bytes, pckey: bytes, model: str, ip: str = "") -> None:
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM drives WHERE name=? OR csn=?", (name, csn)).fetchone():
                raise RuleViolation("names are permanent and CSNs unique", f"a drive named {name!r} or with CSN "
                                    f"{csn.hex()} already exists", "Choose another name; each drive is imported once.")
            conn.execute("INSERT INTO drives (name, csn, model, pckey_sealed, ip) VALUES (?,?,?,?,?)",
                         (name, csn, model, self._seal(pckey, b"pckey:" + csn), ip))
            self.audit("import_drive", {"drive": name, "csn": csn.hex(), "model": model, "ip": ip})

    def drive_ip(self, name: str) -> str:
        row = self._conn.execute("SELECT ip FROM drives WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no drive named {name!r}")
        return str(row[0])

    def set_drive_ip(self, name: str, ip: str) -> None:
        with self.transaction() as conn:
            if conn.execute("UPDATE drives SET ip=? WHERE name=?", (ip, name)).rowcount != 1:
                raise NotFound(f"no drive named {name!r}")
            self.audit("set_drive_ip", {"drive": name, "ip": ip})

    _DRIVE_QUERY = """
        SELECT d.name, d.csn, d.model, k.device_key_id, COALESCE(k.timestamp, 0), p.pool FROM drives d
        LEFT JOIN (SELECT drive, device_key_id, timestamp,
                          ROW_NUMBER() OVER (PARTITION BY drive ORDER BY timestamp DESC) AS newest
                   FROM device_keys) k ON k.drive = d.name AND k.newest = 1
        LEFT JOIN pool_drives p ON p.drive = d.name"""

    def drive(self, name: str) -> DriveRecord:
        row = self._conn.execute("SELECT name, csn, model FROM drives WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no drive named {name!r}; 't10k kms list' shows the drives")
        key = self._conn.execute("SELECT device_key_id, timestamp FROM device_keys WHERE drive=? "
                                 "ORDER BY timestamp DESC LIMIT 1", (name,)).fetchone()
        pool = self._conn.execute("SELECT pool FROM pool_drives WHERE drive=?", (name,)).fetchone()
        return DriveRecord(row[0], bytes(row[1]), row[2], None if key is None else bytes(key[0]),
                           0 if key is None else key[1], None if pool is None else pool[0])

    def drives(self) -> list[DriveRecord]:
        rows = self._conn.execute(self._DRIVE_QUERY + " ORDER BY d.name").fetchall()
        return [DriveRecord(r[0], bytes(r[1]), r[2], None if r[3] is None else bytes(r[3]), r[4], r[5]) for r in rows]

    def pool_drives(self, pool: str) -> list[DriveRecord]:
        rows = self._conn.execute(self._DRIVE_QUERY + " WHERE p.pool = ? ORDER BY d.name", (pool,)).fetchall()
        return [DriveRecord(r[0], bytes(r[1]), r[2], None if r[3] is None else bytes(r[3]), r[4], r[5]) for r in rows]

    def pckey(self, name: str) -> bytes:
        row = self._conn.execute("SELECT csn, pckey_sealed FROM drives WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no drive named {name!r}")
        return self._unseal(row[1], b"pckey:" + row[0], f"PCkey of {name}")

    def device_keys(self, name: str, limit: int) -> list[tuple[bytes, bytes]]:
        """The drive's newest device keys, newest first, as (device_key_id, key)."""
        rows = self._conn.execute(
            "SELECT device_key_id, key_sealed FROM device_keys WHERE drive=? ORDER BY timestamp DESC LIMIT ?",
            (name, limit)).fetchall()
        return [(bytes(r[0]), self._unseal(r[1], b"device_key:" + r[0], f"device key of {name}")) for r in rows]

    #: Every drive of a pool (by name) with its PCkey and its newest device keys' OKT material
    #: (newest first; none: one row of NULLs), through the (drive, timestamp) index: one query.
    _OKT_DRIVES_QUERY = """
        SELECT d.name, d.csn, d.pckey_sealed, k.device_key_id, k.okt_sealed FROM pool_drives p
        JOIN drives d ON d.name = p.drive
        LEFT JOIN device_keys k ON k.device_key_id IN (
            SELECT device_key_id FROM device_keys WHERE drive = d.name ORDER BY timestamp DESC LIMIT ?2)
        WHERE p.pool = ?1 ORDER BY d.name, k.timestamp DESC"""

    def pool_okt_drives(self, pool: str, limit: int) -> list[OktDrive]:
        """What an OKT needs of each drive of the pool, in one query (10,000 drives in one OKT)."""
        drives: list[OktDrive] = []
        for name, csn, pckey_sealed, key_id, okt_sealed in self._conn.execute(self._OKT_DRIVES_QUERY, (pool, limit)):
            if not drives or drives[-1].name != name:
                csn = bytes(csn)
                drives.append(OktDrive(name, csn, self._unseal(pckey_sealed, b"pckey:" + csn, f"PCkey of {name}"), []))
            if key_id is not None:
                key_id = bytes(key_id)
                material = self._unseal(okt_sealed or b"", migrations.OKT_MATERIAL_AD + key_id,
                                        f"OKT material of device key {key_id.hex()} of {name}")
                drives[-1].device_keys.append((key_id, *migrations.open_okt_material(material)))
        return drives

    def new_device_keys(self, names: list[str], *, via_pckey: bool) -> tuple[int, list[bytes]]:
        """Create one new device key per drive at one EKT timestamp; returns (timestamp, key IDs)."""
        _, changes = self.plan_device_keys(names, via_pckey=via_pckey)
        with self.transaction():
            self.apply_device_keys(changes)
        return changes.timestamp, [k.key_id for k in changes.device_keys]

    def plan_device_keys(self, names: list[str], *, via_pckey: bool) -> tuple[dict[bytes, bytes], DeviceKeyChanges]:
        """New device keys for an EKT, without storing them: (key ID -> key, the sealed rows to store
        once the token confirms). Their IDs and timestamp follow any write still in flight."""
        ordinal, last_ts = self._reserved()
        ts = max(now_us(), last_ts + 1)
        csns, kms_id = self._csns(), self.kms_id
        plain: dict[bytes, bytes] = {}
        rows = []
        for i, name in enumerate(names):
            if name not in csns:
                raise NotFound(f"no drive named {name!r}; 't10k kms list' shows the drives")
            key_id = make_key_id(kms_id, ordinal + i)
            plain[key_id] = key = os.urandom(32)
            rows.append(NewDeviceKey(key_id, name, self._seal(key, b"device_key:" + key_id),
                                     migrations.seal_okt_material(self._sealer, csns[name], key_id, key)))
        return plain, DeviceKeyChanges(ts, ordinal + len(names), tuple(rows), via_pckey)

    def _csns(self) -> dict[str, bytes]:
        return {name: bytes(csn) for name, csn in self._conn.execute("SELECT name, csn FROM drives")}

    def apply_device_keys(self, changes: DeviceKeyChanges) -> None:
        """Store planned device keys; call inside a transaction."""
        if not changes.device_keys:
            return
        conn = self._conn
        csns = None
        for k in changes.device_keys:
            okt_sealed = k.okt_sealed
            if not okt_sealed:  # an intent recorded before schema 8
                csns = csns or self._csns()
                key = self._unseal(k.sealed, b"device_key:" + k.key_id, f"new device key of {k.drive}")
                okt_sealed = migrations.seal_okt_material(self._sealer, csns[k.drive], k.key_id, key)
            conn.execute("INSERT INTO device_keys (device_key_id, drive, key_sealed, timestamp, via_pckey, okt_sealed) "
                         "VALUES (?,?,?,?,?,?)",
                         (k.key_id, k.drive, k.sealed, changes.timestamp, int(changes.via_pckey), okt_sealed))
        conn.execute("UPDATE meta SET value=MAX(value, ?) WHERE name='next_ordinal'", (changes.next_ordinal,))
        conn.execute("UPDATE meta SET value=MAX(value, ?) WHERE name='last_timestamp'", (changes.timestamp,))
        self.audit("create_device_keys", {"drives": [k.drive for k in changes.device_keys],
                                          "timestamp": changes.timestamp, "via_pckey": changes.via_pckey,
                                          "device_key_ids": [k.key_id.hex() for k in changes.device_keys]})

    # --- media keys and key sets -------------------------------------------

    def create_key(self, description: str = "") -> bytes:
        if len(description) > 256:
            raise RuleViolation("descriptions hold up to 256 characters (limitation 3)",
                                f"the description has {len(description)}", "Shorten it.")
        with self.transaction() as conn:
            key_id = self._next_key_id(conn)
            conn.execute("INSERT INTO keys VALUES (?,?,?,?)", (
                key_id, self._seal(os.urandom(MEDIA_KEY_SIZE), b"media_key:" + key_id), description, now_us()))
            self.audit("create_key", {"key_id": key_id.hex(), "description": description})
        return key_id

    def key_value(self, key_id: bytes) -> bytes:
        row = self._conn.execute("SELECT key_sealed FROM keys WHERE key_id=?", (key_id,)).fetchone()
        if row is None:
            raise NotFound(f"no key with ID {key_id.hex()}")
        return self._unseal(row[0], b"media_key:" + key_id, f"key {key_id.hex()}")

    def key_ids(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._conn.execute("SELECT key_id FROM keys ORDER BY key_id")]

    def create_key_set(self, name: str) -> None:
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM key_sets WHERE name=?", (name,)).fetchone():
                raise RuleViolation("names are permanent (limitation 2)", f"key set {name!r} exists", "Choose another name.")
            conn.execute("INSERT INTO key_sets (name) VALUES (?)", (name,))
            self.audit("create_key_set", {"key_set": name})

    def add_key_to_set(self, key_set: str, key_id: bytes) -> None:
        with self.transaction() as conn:
            self._require(conn, "key_sets", "name", key_set, "key set")
            self._require(conn, "keys", "key_id", key_id, "key")
            pools = [r[0] for r in conn.execute("SELECT pool FROM mapping_key_sets WHERE key_set=?", (key_set,))]
            rules.check_key_set_unmapped(key_set, pools)
            count = conn.execute("SELECT COUNT(*) FROM key_set_members WHERE key_set=?", (key_set,)).fetchone()[0]
            rules.check_key_set_size(count)
            conn.execute("INSERT OR IGNORE INTO key_set_members VALUES (?,?)", (key_set, key_id))
            self.audit("add_key_to_set", {"key_set": key_set, "key_id": key_id.hex()})

    def key_set_members(self, key_set: str) -> list[bytes]:
        return [bytes(r[0]) for r in self._conn.execute(
            "SELECT key_id FROM key_set_members WHERE key_set=? ORDER BY key_id", (key_set,))]

    # --- pools and mappings --------------------------------------------------

    def create_pool(self, name: str) -> None:
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM pools WHERE name=?", (name,)).fetchone():
                raise RuleViolation("names are permanent (limitation 2)", f"pool {name!r} exists", "Choose another name.")
            conn.execute("INSERT INTO pools (name) VALUES (?)", (name,))
            self.audit("create_pool", {"pool": name})

    def add_drive_to_pool(self, pool: str, drive: str) -> None:
        record = self.drive(drive)
        rules.check_drive_enabled(drive, record.enabled)
        with self.transaction() as conn:
            self._require(conn, "pools", "name", pool, "pool")
            conn.execute("DELETE FROM pool_drives WHERE drive=?", (drive,))
            conn.execute("INSERT INTO pool_drives VALUES (?,?)", (pool, drive))
            self.audit("add_drive_to_pool", {"pool": pool, "drive": drive})

    def set_mapping(self, pool: str, key_sets: list[str], write_key_id: bytes) -> Mapping:
        """Change the pool's mapping; it gets a new timestamp."""
        with self.transaction() as conn:
            self._require(conn, "pools", "name", pool, "pool")
            for ks in key_sets:
                self._require(conn, "key_sets", "name", ks, "key set")
            key_ids = rules.check_mapping({ks: self.key_set_members(ks) for ks in key_sets}, write_key_id)
            rules.check_active(key_ids, self.inactive_keys())
            ts = self._next_timestamp(conn)
            conn.execute("INSERT OR REPLACE INTO mappings VALUES (?,?,?)", (pool, write_key_id, ts))
            conn.execute("DELETE FROM mapping_key_sets WHERE pool=?", (pool,))
            conn.executemany("INSERT INTO mapping_key_sets VALUES (?,?)", [(pool, ks) for ks in key_sets])
            self.audit("set_mapping", {"pool": pool, "key_sets": key_sets, "write_key_id": write_key_id.hex(),
                                       "timestamp": ts})
        return self.mapping(pool)

    def apply_mapping(self, pool: str) -> Mapping:
        """"Apply" without a change: the same keys under a new timestamp (seed, Scenario 5)."""
        with self.transaction() as conn:
            if not conn.execute("SELECT 1 FROM mappings WHERE pool=?", (pool,)).fetchone():
                raise NotFound(f"pool {pool!r} has no mapping yet; map key sets to it first")
            ts = self._next_timestamp(conn)
            conn.execute("UPDATE mappings SET timestamp=? WHERE pool=?", (ts, pool))
            self.audit("apply_mapping", {"pool": pool, "timestamp": ts})
        return self.mapping(pool)

    def inactive_keys(self) -> set[bytes]:
        """Keys deactivated by a User and an Administrator together (the two-person rule)."""
        return {bytes(r[0]) for r in self._conn.execute("SELECT key_id FROM inactive_keys")}

    def mapping(self, pool: str) -> Mapping:
        row = self._conn.execute("SELECT write_key_id, timestamp FROM mappings WHERE pool=?", (pool,)).fetchone()
        if row is None:
            raise NotFound(f"pool {pool!r} has no mapping yet; map key sets to it first")
        key_sets = [r[0] for r in self._conn.execute(
            "SELECT key_set FROM mapping_key_sets WHERE pool=? ORDER BY key_set", (pool,))]
        key_ids = rules.check_mapping({ks: self.key_set_members(ks) for ks in key_sets}, bytes(row[0]))
        return Mapping(pool, tuple(key_sets), bytes(row[0]), row[1], tuple(key_ids))

    # --- tokens ---------------------------------------------------------------

    def add_token(self, name: str, ip: str, port: int) -> bytes:
        """Register a token; returns the new token secret to provision it with."""
        secret = os.urandom(TOKEN_SECRET_SIZE)
        with self.transaction() as conn:
            if conn.execute("SELECT 1 FROM tokens WHERE name=?", (name,)).fetchone():
                raise RuleViolation("names are permanent (limitation 2)", f"token {name!r} exists", "Choose another name.")
            conn.execute("INSERT INTO tokens (name, ip, port, secret_sealed) VALUES (?,?,?,?)",
                         (name, ip, port, self._seal(secret, b"token_secret:" + name.encode())))
            self.audit("add_token", {"token": name, "ip": ip, "port": port})
        return secret

    def token(self, name: str) -> TokenRecord:
        row = self._conn.execute("SELECT name, ip, port FROM tokens WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no token named {name!r}; add it with 't10k kms add-token'")
        return TokenRecord(*row)

    def tokens(self) -> list[TokenRecord]:
        return [TokenRecord(*r) for r in self._conn.execute("SELECT name, ip, port FROM tokens ORDER BY name")]

    def token_secret(self, name: str) -> bytes:
        row = self._conn.execute("SELECT secret_sealed FROM tokens WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no token named {name!r}")
        return self._unseal(row[0], b"token_secret:" + name.encode(), f"secret of token {name}")

    def next_token_counter(self, name: str) -> int:
        """A replay counter above any used before, even after a restore from an old backup."""
        with self.transaction() as conn:
            counter = self.peek_token_counter(name)
            conn.execute("UPDATE tokens SET counter=? WHERE name=?", (counter, name))
        return counter

    def peek_token_counter(self, name: str) -> int:
        """The next replay counter, not yet recorded: above the stored one and any write in flight."""
        row = self._conn.execute("SELECT counter FROM tokens WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no token named {name!r}")
        pending = self._conn.execute("SELECT MAX(counter) FROM pending_writes WHERE token=?", (name,)).fetchone()[0]
        return max(row[0] + 1, (pending or 0) + 1, now_us())

    def raise_token_counter(self, name: str, counter: int) -> None:
        """The token accepted ``counter``: never use it or one below it again. Inside a transaction."""
        self._conn.execute("UPDATE tokens SET counter=MAX(counter, ?) WHERE name=?", (counter, name))

    @staticmethod
    def _require(conn: sqlite3.Connection, table: str, column: str, value: object, what: str) -> None:
        if not conn.execute(f"SELECT 1 FROM {table} WHERE {column}=?", (value,)).fetchone():
            shown = value.hex() if isinstance(value, bytes) else repr(value)
            raise NotFound(f"no {what} {shown}")
