"""Schema migrations: each version's changes, applied in order inside one transaction."""

from __future__ import annotations

import os
import sqlite3
from typing import Callable

from protocol import envelope

Migration = Callable[[sqlite3.Connection, bytes], None]


def _v2_audit(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """The audit trail, append-only, and its key sealed under the database key."""
    conn.executescript("""
        CREATE TABLE audit (
            seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, operator TEXT NOT NULL, action TEXT NOT NULL,
            detail TEXT NOT NULL, mac BLOB NOT NULL) STRICT;
        CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
        CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
            BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
    """)
    conn.execute("INSERT INTO meta VALUES ('audit_key', ?)", (envelope.seal(dbkey, os.urandom(32), b"meta:audit_key"),))


def _v3_token_descriptions(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """Every entity has a description (limitation 3): tokens had none."""
    conn.execute("ALTER TABLE tokens ADD COLUMN description TEXT NOT NULL DEFAULT ''")


def _v4_operators(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """Operators, sessions, and the two-person rule for deactivating keys."""
    conn.executescript("""
        CREATE TABLE operators (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, salt BLOB NOT NULL, pw_hash BLOB NOT NULL,
            must_change INTEGER NOT NULL, active INTEGER NOT NULL, created_by TEXT NOT NULL) STRICT;
        CREATE TABLE sessions (token_hash BLOB PRIMARY KEY, operator TEXT NOT NULL, last_used INTEGER NOT NULL) STRICT;
        CREATE TABLE key_state_requests (
            key_id BLOB NOT NULL, action TEXT NOT NULL, role TEXT NOT NULL, operator TEXT NOT NULL,
            PRIMARY KEY (key_id, action, role)) STRICT;
        CREATE TABLE inactive_keys (key_id BLOB PRIMARY KEY) STRICT;
    """)


def _v5_drive_addresses(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """Drives get their static IP, so the KMS can ask their VOP (verify-pool)."""
    conn.execute("ALTER TABLE drives ADD COLUMN ip TEXT NOT NULL DEFAULT ''")


def _v6_pending_writes(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """Token writes in flight: recorded before the push, settled only by the token's answer.

    The reservation columns keep key IDs and timestamps the write carries from being handed
    out twice; the intent itself (new device keys, sealed, and what to audit) is sealed
    under the database key."""
    conn.execute("""
        CREATE TABLE pending_writes (
            counter INTEGER PRIMARY KEY, token TEXT NOT NULL REFERENCES tokens(name), kind TEXT NOT NULL,
            started INTEGER NOT NULL, reserved_ordinal INTEGER NOT NULL, reserved_timestamp INTEGER NOT NULL,
            intent_sealed BLOB NOT NULL) STRICT""")


def _v7_kms_signing_key(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """Protocol version 3: the KMS signs what drives act on (announcements); its Ed25519 key is
    sealed under the database key, and its public half goes to each drive in its next EKT."""
    conn.execute("INSERT INTO meta VALUES ('kms_signing_key', ?)",
                 (envelope.seal(dbkey, envelope.new_signing_key(), KMS_SIGNING_KEY_AD),))


#: Associated data of the sealed KMS signing key (kms_client/keyadmin.py reseals it too).
KMS_SIGNING_KEY_AD = b"meta:kms_signing_key"

#: version -> the step that brings a store from version-1 to it
MIGRATIONS: dict[int, Migration] = {2: _v2_audit, 3: _v3_token_descriptions, 4: _v4_operators,
                                    5: _v5_drive_addresses, 6: _v6_pending_writes, 7: _v7_kms_signing_key}
LATEST = max(MIGRATIONS)


def migrate(conn: sqlite3.Connection, dbkey: bytes, current: int) -> int:
    for version in range(current + 1, LATEST + 1):
        MIGRATIONS[version](conn, dbkey)
        conn.execute("UPDATE meta SET value=? WHERE name='schema_version'", (version,))
    return LATEST
