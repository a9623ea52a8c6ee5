"""The files of a KMS store, opened with care: the database, its WAL and the database key.

A damaged file is reported where it is opened, in one line naming it and the way out
(restore from a backup), never as a traceback from deep inside a command.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from protocol import envelope
from protocol.errors import UnwrapError

from .errors import StoreDamaged, StoreError

DB_NAME = "kms.sqlite3"
DBKEY_NAME = "dbkey"
_CHECK = b"t10k database key check"


def parse_db_key(text: str) -> bytes:
    """The seed's database and backup keys: exactly 64 hexadecimal characters."""
    text = text.strip()
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise StoreError(f"must be 64 hexadecimal characters; got {len(text)} characters"
                         + ("" if len(text) != 64 else " with non-hex characters"))
    return bytes.fromhex(text)


def _current_dbkey(directory: Path, dbkey: bytes, check: bytes) -> bytes:
    """The database key that opens the store; finishes a set-dbkey a crash interrupted."""
    try:
        envelope.unseal(dbkey, check, b"meta:check", "database key check")
        return dbkey
    except UnwrapError:
        pending = directory / (DBKEY_NAME + ".new")
        if pending.exists():
            new = _read_dbkey(pending, directory)
            try:
                envelope.unseal(new, check, b"meta:check", "database key check")
            except UnwrapError:
                pass
            else:
                os.replace(pending, directory / DBKEY_NAME)  # the store was re-encrypted: finish the switch
                return new
        raise StoreError(f"the database key in {directory / DBKEY_NAME} is not the key of this store") from None


def damaged(path: Path, what: str, directory: Path) -> StoreDamaged:
    """One line: the file, what is wrong, and the way out."""
    return StoreDamaged(f"{path} {what}: restore the store from a backup: "
                        f"t10k kms restore latest --store {directory} --key-file BACKUP_KEY_FILE")


def _read_dbkey(keyfile: Path, directory: Path) -> bytes:
    try:
        return parse_db_key(keyfile.read_text())
    except FileNotFoundError:
        raise damaged(keyfile, "(the database key) is missing", directory) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise damaged(keyfile, f"(the database key) cannot be read ({exc})", directory) from None
    except StoreError as exc:
        raise damaged(keyfile, f"(the database key) is damaged: it {exc}", directory) from None


#: The first four octets of a SQLite write-ahead log (either byte order).
_WAL_MAGICS = (b"\x37\x7f\x06\x82", b"\x37\x7f\x06\x83")


def _check_wal(path: Path, directory: Path) -> None:
    """SQLite would silently ignore a WAL it cannot read, and the transactions in it with it."""
    wal = Path(str(path) + "-wal")
    try:
        with open(wal, "rb") as fh:
            head = fh.read(32)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise damaged(wal, f"(the store's write-ahead log) cannot be read ({exc})", directory) from None
    if head and (len(head) < 32 or head[:4] not in _WAL_MAGICS):
        raise damaged(wal, "(the store's write-ahead log) is damaged: the latest changes may be in it", directory)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA secure_delete=ON")
    return conn
