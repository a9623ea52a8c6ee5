"""A KMS store with logins for the console's tests, and logins for each role."""

from __future__ import annotations

import os
import re
from pathlib import Path

from kms_client import operators
from kms_client.keyadmin import set_backupkey
from kms_client.store import KmsStore

PASSWORDS = {"admin": "admin-pass-1", "officer": "officer-pass-1", "user": "user-pass-1", "admin2": "admin-pass-2"}
ADMIN_PASSWORD = "kmsadm-new-pass"


def make_store(directory: Path, *, kms_id: bytes = b"\x0a\x0b\x0c\x0d") -> KmsStore:
    """A store with roles on, KmsAdm's password changed, and an operator of each role."""
    store = KmsStore.create(directory, dbkey=os.urandom(32), kms_id=kms_id)
    operators.enable_roles(store)
    set_backupkey(store, os.urandom(32))
    return store


def add_operators(store: KmsStore) -> None:
    kmsadm = operators.operator(store, operators.DEFAULT_ADMIN)
    operators.set_password(store, kmsadm, ADMIN_PASSWORD)
    kmsadm = operators.operator(store, operators.DEFAULT_ADMIN)
    operators.create_operator(store, kmsadm, "officer", operators.Role.SECURITY_OFFICER, PASSWORDS["officer"])
    operators.create_operator(store, kmsadm, "admin", operators.Role.ADMINISTRATOR, PASSWORDS["admin"])
    officer = operators.operator(store, "officer")
    operators.create_operator(store, officer, "user", operators.Role.USER, PASSWORDS["user"])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no anti-forgery token in the page"
    return found.group(1)
