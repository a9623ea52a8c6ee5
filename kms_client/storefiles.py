"""The files of a KMS store, opened with care: the database, its WAL and the database key.

A damaged file is reported where it is opened, in one line naming it and the way out
(restore from a backup), never as a traceback from deep inside a command.

The database key need not sit beside the database (docs/LAB-VMS.md, "The database key").
:func:`resolve_dbkey` is the one place every command finds it, in this order: a key file the
command names (``--dbkey-file``); ``$T10K_DBKEY`` (64 hex characters); the key file named when
the store was made (its path, not the key, is kept in the store); ``STORE/dbkey``, the lab
default; a prompt, only on a terminal. None of these: an error naming them all.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol import envelope
from protocol.errors import UnwrapError

from .errors import StoreDamaged, StoreError

DB_NAME = "kms.sqlite3"
DBKEY_NAME = "dbkey"
#: The environment variable that may hold the database key (64 hexadecimal characters).
DBKEY_ENV = "T10K_DBKEY"
#: The meta row naming the key file chosen at init (a path, never the key).
DBKEY_FILE_META = "dbkey_file"
_CHECK = b"t10k database key check"


class DbKeyMissing(StoreDamaged):
    """No way of finding the database key worked; the message names every way there is.
    (A StoreDamaged: a store whose key is lost can be restored over with the backup key alone.)"""


@dataclass(frozen=True)
class DbKeySource:
    """How this command was told the database key; the same for every command that opens a store."""

    file: Path | None = None  # --dbkey-file
    environ: Mapping[str, str] | None = None  # None: os.environ
    interactive: bool | None = None  # may we prompt? None: when standard input is a terminal

    def env_key(self) -> bytes | None:
        text = (os.environ if self.environ is None else self.environ).get(DBKEY_ENV)
        if not text:
            return None
        try:
            return parse_db_key(text)
        except StoreError as exc:
            raise StoreError(f"${DBKEY_ENV} is not a database key: it {exc}") from None

    def may_prompt(self) -> bool:
        if self.interactive is not None:
            return self.interactive
        try:
            return sys.stdin is not None and sys.stdin.isatty()
        except (ValueError, OSError):
            return False


@dataclass(frozen=True)
class DbKey:
    """The database key found, where it came from (for messages) and the file holding it, if any
    (set-dbkey and restore write the new key there; from the environment or a prompt: None)."""

    key: bytes
    where: str
    path: Path | None


def default_dbkey_path(directory: Path) -> Path:
    return directory / DBKEY_NAME


def pending_path(keyfile: Path) -> Path:
    """Where a new database key waits while the store is re-encrypted (set-dbkey, restore)."""
    return keyfile.with_name(keyfile.name + ".new")


def resolve_dbkey(directory: Path, source: DbKeySource, recorded: Path | None) -> DbKey:
    """The database key of the store in ``directory`` (``recorded``: the key file named at init)."""
    if source.file is not None:
        return DbKey(_read_dbkey(source.file, directory), f"in {source.file}", source.file)
    key = source.env_key()
    if key is not None:
        return DbKey(key, f"from ${DBKEY_ENV}", None)
    missing = ""
    if recorded is not None:
        if recorded.exists():
            return DbKey(_read_dbkey(recorded, directory), f"in {recorded}", recorded)
        missing = f"its key file {recorded} (named when the store was made) is not there (is its medium mounted?); "
    else:
        default = default_dbkey_path(directory)
        if default.exists():
            return DbKey(_read_dbkey(default, directory), f"in {default}", default)
    if source.may_prompt():
        text = getpass.getpass(f"database key of the KMS store in {directory} (64 hexadecimal characters): ")
        try:
            return DbKey(parse_db_key(text), "typed at the prompt", None)
        except StoreError as exc:
            raise StoreError(f"the database key typed at the prompt {exc}") from None
    raise DbKeyMissing(
        f"no database key for the KMS store in {directory}: {missing}give it with --dbkey-file PATH, or set "
        f"${DBKEY_ENV} to its 64 hexadecimal characters, or run the command on a terminal to type it "
        f"(a lab keeps it in {default_dbkey_path(directory)}). If it is lost, restore: t10k kms restore latest "
        f"--store {directory} --key-file BACKUP_KEY_FILE")


def write_dbkey_file(path: Path, key: bytes) -> None:
    """A key file: 0600, written and synced before anything relies on it."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def parse_db_key(text: str) -> bytes:
    """The seed's database and backup keys: exactly 64 hexadecimal characters."""
    text = text.strip()
    if len(text) != 64 or any(c not in "0123456789abcdefABCDEF" for c in text):
        raise StoreError(f"must be 64 hexadecimal characters; got {len(text)} characters"
                         + ("" if len(text) != 64 else " with non-hex characters"))
    return bytes.fromhex(text)


def _current_dbkey(directory: Path, found: DbKey, check: bytes) -> DbKey:
    """The database key that opens the store; finishes a set-dbkey or restore a crash interrupted."""
    try:
        envelope.unseal(found.key, check, b"meta:check", "database key check")
        return found
    except UnwrapError:
        pending = None if found.path is None else pending_path(found.path)
        if pending is not None and found.path is not None and pending.exists():
            new = _read_dbkey(pending, directory)
            try:
                envelope.unseal(new, check, b"meta:check", "database key check")
            except UnwrapError:
                pass
            else:
                os.replace(pending, found.path)  # the store was re-encrypted: finish the switch
                return DbKey(new, found.where, found.path)
        raise StoreError(f"the database key {found.where} is not the key of this store") from None


def recorded_dbkey_file(conn: sqlite3.Connection) -> Path | None:
    row = conn.execute("SELECT value FROM meta WHERE name=?", (DBKEY_FILE_META,)).fetchone()
    return None if row is None or not row[0] else Path(str(row[0]))


def record_dbkey_file(conn: sqlite3.Connection, directory: Path, path: Path | None) -> None:
    """Name the key file in the store (nothing when it is the default beside it, or none)."""
    if path is None or path.resolve() == default_dbkey_path(directory).resolve():
        conn.execute("DELETE FROM meta WHERE name=?", (DBKEY_FILE_META,))
    else:
        conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (DBKEY_FILE_META, str(path.resolve())))


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
