"""A KMS store plus an in-memory LAN: the whole system without sockets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kms_client.builders import build_ekt, build_okt
from kms_client.store import KmsStore
from protocol.manufacturing import ManufacturedDrive, make_drives
from tests.memnet import MemoryLan

TOKEN_A, TOKEN_B = "127.0.0.21", "127.0.0.22"


@dataclass
class Site:
    kms: KmsStore
    lan: MemoryLan
    made: list[ManufacturedDrive]
    secrets: dict[str, bytes]

    @property
    def names(self) -> list[str]:
        return [f"d{i}" for i in range(len(self.made))]

    def drive(self, i: int):  # type: ignore[no-untyped-def]
        return self.lan.drives[f"127.0.1.{i + 1}"]

    def ip(self, i: int) -> str:
        return f"127.0.1.{i + 1}"

    def write_ekt(self, names: list[str] | None = None, *, use_pckey: bool = True, token: str = TOKEN_A) -> None:
        self.lan.manage(token, build_ekt(self.kms, names or self.names, use_pckey=use_pckey), self.secrets[token])

    def write_okt(self, pool: str = "P", *, token: str = TOKEN_A) -> None:
        self.lan.manage(token, build_okt(self.kms, pool), self.secrets[token])

    def map_new_key(self, pool: str = "P", key_set: str | None = None) -> bytes:
        """Method 1: a new key set holding a new key, mapped as the write key beside the old sets."""
        key = self.kms.create_key()
        key_set = key_set or f"KS{len(self.kms.key_ids())}"
        self.kms.create_key_set(key_set)
        self.kms.add_key_to_set(key_set, key)
        try:
            sets = list(self.kms.mapping(pool).key_sets)
        except Exception:
            sets = []
        self.kms.set_mapping(pool, sets + [key_set], key)
        return key

    def replace_keys(self, pool: str = "P", key_set: str = "New") -> bytes:
        """A new key set holding a new key becomes the whole mapping: every older key leaves it."""
        key = self.kms.create_key()
        self.kms.create_key_set(key_set)
        self.kms.add_key_to_set(key_set, key)
        self.kms.set_mapping(pool, [key_set], key)
        return key


def make_site(tmp: Path, drive_count: int = 3) -> Site:
    kms = KmsStore.create(tmp / "kms", dbkey=os.urandom(32), kms_id=b"\x0a\x0b\x0c\x0d")
    lan = MemoryLan()
    made = make_drives(drive_count)
    secrets = {}
    for ip in (TOKEN_A, TOKEN_B):
        secrets[ip] = kms.add_token(ip, ip, 7020)
        lan.add_token(ip, secrets[ip])
    for i, m in enumerate(made):
        kms.add_drive(f"d{i}", m.csn, m.pckey, m.model)
        lan.add_drive(f"127.0.1.{i + 1}", m.csn, m.pckey, seed=i)
    kms.create_pool("P")
    return Site(kms, lan, made, secrets)


def arm_pool(site: Site) -> bytes:
    """Put every (enrolled) drive in pool P, map it one new key, deliver the OKT; returns the key ID."""
    for n in site.names:
        site.kms.add_drive_to_pool("P", n)
    key = site.map_new_key()
    site.write_okt()
    site.lan.run()
    return key


def arm(site: Site) -> bytes:
    """Enrol every drive, then arm the pool; returns the key's ID."""
    site.write_ekt()
    site.lan.run()
    return arm_pool(site)
