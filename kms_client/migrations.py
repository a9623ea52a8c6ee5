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

#: Associated data of a device key's OKT material (followed by its key ID).
OKT_MATERIAL_AD = b"device_key_okt:"


def seal_okt_material(sealer: envelope.Sealer, csn: bytes, device_key_id: bytes, device_key: bytes) -> bytes:
    """What every OKT needs of a device key and would otherwise derive from it each time: the
    media-key wrapping key (32 octets) and the drive's clear authorisation under it (16),
    sealed under the database key and bound to the key ID."""
    material = envelope.media_wrap_key(device_key) + envelope.clear_mac(device_key, csn, device_key_id)
    return sealer.seal(material, OKT_MATERIAL_AD + device_key_id)


def open_okt_material(material: bytes) -> tuple[bytes, bytes]:
    """(media-key wrapping key, clear authorisation MAC) of unsealed OKT material."""
    return material[:_WRAP_KEY_SIZE], material[_WRAP_KEY_SIZE:]


_WRAP_KEY_SIZE = 32  # what envelope.derive makes


def _v8_okt_material(conn: sqlite3.Connection, dbkey: bytes) -> None:
    """Each device key's OKT material, made once with the key (an OKT for 10,000 drives made
    20,000 HKDF derivations and 10,000 MACs from the device keys, the same at every OKT)."""
    conn.execute("ALTER TABLE device_keys ADD COLUMN okt_sealed BLOB")
    sealer = envelope.Sealer(dbkey)
    rows = conn.execute("SELECT k.device_key_id, d.csn, k.key_sealed FROM device_keys k "
                        "JOIN drives d ON d.name = k.drive").fetchall()
    for key_id, csn, sealed in rows:
        key = sealer.unseal(sealed, b"device_key:" + key_id, f"device key {bytes(key_id).hex()}")
        conn.execute("UPDATE device_keys SET okt_sealed=? WHERE device_key_id=?",
                     (seal_okt_material(sealer, bytes(csn), bytes(key_id), key), key_id))

#: version -> the step that brings a store from version-1 to it
MIGRATIONS: dict[int, Migration] = {2: _v2_audit, 3: _v3_token_descriptions, 4: _v4_operators,
                                    5: _v5_drive_addresses, 6: _v6_pending_writes, 7: _v7_kms_signing_key,
                                    8: _v8_okt_material}
LATEST = max(MIGRATIONS)


def migrate(conn: sqlite3.Connection, dbkey: bytes, current: int) -> int:
    for version in range(current + 1, LATEST + 1):
        MIGRATIONS[version](conn, dbkey)
        conn.execute("UPDATE meta SET value=? WHERE name='schema_version'", (version,))
    return LATEST
