"""Operators and roles: every action for every role, logins, sessions, the two-person rule."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kms_client import keyadmin, operators
from kms_client.backup import list_backups
from kms_client.builders import build_okt
from kms_client.errors import RuleViolation
from kms_client.operators import A, S, U, NotPermitted, Operator, Role, SessionError
from kms_client.store import DB_NAME, KmsStore

PASSWORDS = {A: "admin passphrase", S: "officer passphrase", U: "user passphrase"}


@pytest.fixture
def store(tmp_path: Path) -> KmsStore:
    s = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=b"\x01\x02\x03\x04")
    keyadmin.set_backupkey(s, os.urandom(32))
    operators.enable_roles(s)
    return s


def _as(store: KmsStore, role: Role) -> Operator:
    """Log in an operator of ``role`` (created by the right people) and return it."""
    admin = operators.operator(store, operators.DEFAULT_ADMIN)
    if admin.must_change:
        operators.set_password(store, admin, PASSWORDS[A])
        admin = operators.operator(store, operators.DEFAULT_ADMIN)
    if role is A:
        return admin
    name = "so1" if role is S else "user1"
    try:
        return operators.operator(store, name)
    except Exception:
        pass
    creator = admin if role is S else _as(store, S)
    operators.create_operator(store, creator, name, role, PASSWORDS[role])
    return operators.operator(store, name)


@pytest.mark.parametrize("role", list(Role), ids=lambda r: r.name)
@pytest.mark.parametrize("action", sorted(operators.PERMISSIONS))
def test_every_action_for_every_role(action: str, role: Role) -> None:
    who = Operator("x", role, active=True, must_change=False)
    if role in operators.PERMISSIONS[action]:
        operators.authorize(who, action)
    else:
        with pytest.raises(NotPermitted, match=f"may not {action}"):
            operators.authorize(who, action)


def test_the_seeds_split_duties() -> None:
    p = operators.PERMISSIONS
    assert p["create-key"] == p["create-key-set"] == p["import-keys"] == {A}
    assert p["write-ekt"] == {S} and p["map"] == p["write-okt"] == {U}
    assert p["deactivate-key"] == p["reactivate-key"] == {A, U}
    with pytest.raises(NotPermitted):
        operators.authorize(Operator("x", U, True, False), "an action nobody listed")


def test_the_default_administrator_must_change_its_password(store: KmsStore) -> None:
    token = operators.login(store, "KmsAdm", "kmsadm")
    admin = operators.session_operator(store, token)
    with pytest.raises(SessionError, match="change the default password"):
        operators.authorize(admin, "create-key")
    with pytest.raises(RuleViolation, match="default password"):
        operators.set_password(store, admin, "kmsadm")
    operators.set_password(store, admin, "a long passphrase")
    operators.authorize(operators.session_operator(store, token), "create-key")


def test_who_creates_whom(store: KmsStore) -> None:
    admin, so = _as(store, A), _as(store, S)
    with pytest.raises(NotPermitted, match="cannot create a User"):
        operators.create_operator(store, admin, "u", U, "long enough")
    with pytest.raises(NotPermitted, match="cannot create an Administrator"):
        operators.create_operator(store, so, "a2", A, "long enough")
    operators.create_operator(store, admin, "admin2", A, "long enough")  # a second Administrator, as advised
    with pytest.raises(RuleViolation, match="at least 8"):
        operators.create_operator(store, so, "u2", U, "short")
    with pytest.raises(NotPermitted):
        operators.create_operator(store, _as(store, U), "u3", U, "long enough")


def test_logins_sessions_and_inactive_operators(store: KmsStore) -> None:
    user = _as(store, U)
    with pytest.raises(SessionError, match="wrong operator name or password"):
        operators.login(store, user.name, "not it")
    assert store.audit_records()[-1].action == "login_failed"
    token = operators.login(store, user.name, PASSWORDS[U])
    assert operators.session_operator(store, token).name == user.name
    operators.set_active(store, _as(store, S), user.name, False)
    with pytest.raises(SessionError, match="ended"):
        operators.session_operator(store, token)  # deactivating a login ends its sessions
    with pytest.raises(SessionError, match="inactive"):
        operators.login(store, user.name, PASSWORDS[U])
    with pytest.raises(SessionError, match="log in first"):
        operators.session_operator(store, None)


def test_a_store_without_roles_says_it_has_no_logins(tmp_path: Path) -> None:
    """Not "wrong password" then "log in first": a dead end for someone following the README."""
    plain = KmsStore.create(tmp_path / "plain", dbkey=os.urandom(32), kms_id=b"\x01\x02\x03\x04")
    with pytest.raises(SessionError, match=r"no operator logins .*--no-roles.*t10k kms init --store NEW"):
        operators.login(plain, operators.DEFAULT_ADMIN, operators.DEFAULT_PASSWORD)
    with pytest.raises(SessionError, match="no operator logins"):
        operators.session_operator(plain, None)
    assert not any(r.action == "login_failed" for r in plain.audit_records())


def test_logout_and_expiry_take_a_backup(store: KmsStore) -> None:
    _as(store, A)
    token = operators.login(store, "KmsAdm", PASSWORDS[A])
    operators.end_session(store, token)
    expiring = operators.login(store, "KmsAdm", PASSWORDS[A])
    with pytest.raises(SessionError, match="expired"):
        operators.session_operator(store, expiring, idle_s=0)
    assert [b.reason for b in list_backups(store.directory)] == ["logout", "session expiry"]


def test_two_people_deactivate_a_key_and_it_is_not_transferred(store: KmsStore) -> None:
    key = store.create_key()
    store.create_key_set("KS")
    store.add_key_to_set("KS", key)
    store.create_pool("P")
    store.set_mapping("P", ["KS"], key)
    user, admin = _as(store, U), _as(store, A)
    assert "an Administrator must ask" in operators.request_key_state(store, user, key, False)
    assert store.inactive_keys() == set()
    assert operators.request_key_state(store, admin, key, False).endswith("deactivated")
    with pytest.raises(RuleViolation, match="deactivated"):
        store.set_mapping("P", ["KS"], key)
    with pytest.raises(RuleViolation, match="deactivated"):
        build_okt(store, "P")
    operators.request_key_state(store, admin, key, True)
    operators.request_key_state(store, user, key, True)
    assert store.inactive_keys() == set() and store.set_mapping("P", ["KS"], key).write_key_id == key


def test_passwords_are_never_stored(store: KmsStore, tmp_path: Path) -> None:
    _as(store, U)
    store.close()
    data = b"".join(p.read_bytes() for p in (tmp_path / "kms").glob(DB_NAME + "*"))
    assert not [p for p in list(PASSWORDS.values()) + ["kmsadm"] if p.encode() in data]
