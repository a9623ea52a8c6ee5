"""One cold standby (seed, "KMS Mirroring", limitation 14).

The standby is only a repository of backup sets: the primary copies each new set to it
(``sync``, by the minute when run with an interval). Failover is manual: if the primary
still runs, it takes a final backup and copies it; then the latest backup is restored on
the standby, which becomes a KMS with the primary's KMS ID, keys and database key.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .backup import SUFFIX, backup_dir, restore, take_backup
from .errors import StoreError
from .store import KmsStore
from .storefiles import DbKeySource


def set_standby(store: KmsStore, directory: Path) -> None:
    """Name the one standby (a second one replaces the first: there is no redundant standby)."""
    directory = directory.resolve()
    if directory == store.directory.resolve():
        raise StoreError("the standby must be another place than the primary")
    with store.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('standby', ?)", (str(directory),))
        store.audit("set_standby", {"standby": str(directory)})


def standby_of(store: KmsStore) -> Path:
    row = store._conn.execute("SELECT value FROM meta WHERE name='standby'").fetchone()
    if row is None:
        raise StoreError("no standby is set: 't10k kms standby set --dir DIR' names one")
    return Path(row[0])


def sync(store: KmsStore) -> list[str]:
    """Copy the backup sets the standby does not have yet; returns their dump IDs."""
    target = backup_dir(standby_of(store))
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for path in sorted(backup_dir(store.directory).glob(f"*{SUFFIX}")):
        dest = target / path.name
        if dest.exists():
            continue
        tmp = dest.with_suffix(".copying")
        shutil.copyfile(path, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
        copied.append(path.name[: -len(SUFFIX)])
    if copied:
        with store.transaction():
            store.audit("standby_sync", {"copied": copied})
    return copied


def failover(standby: Path, backup_key: bytes, *, primary: KmsStore | None = None,
             dbkey_from: DbKeySource | None = None) -> str:
    """Make the standby the primary from the latest backup; returns the dump ID restored."""
    if primary is not None:  # the primary still runs: a final backup, copied, then it stops
        take_backup(primary, "failover")
        sync(primary)
        primary.close()
    return restore(standby, backup_key, "latest", dbkey_from=dbkey_from).dump_id
