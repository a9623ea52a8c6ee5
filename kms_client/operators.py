"""Operators, roles and sessions (seed, Chapter 2 "Operator Roles").

Three roles with split duties, in one table (``PERMISSIONS``). Passwords are stored as
scrypt hashes (memory-hard). The default KmsAdm must change its password at first login.
Sessions end at logout or after ``SESSION_IDLE_S`` without use; both take a backup, as the
seed's KMS does. Deactivating or reactivating a key needs two people: a User and an
Administrator each ask for it.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocol.timestamps import now_us

from .errors import KmsError, NotFound, RuleViolation
from .store import KmsStore

DEFAULT_ADMIN, DEFAULT_PASSWORD = "KmsAdm", "kmsadm"
SESSION_IDLE_S = 600  # the seed's ten minutes
MIN_PASSWORD = 8


class Role(enum.Enum):
    ADMINISTRATOR = "Administrator"
    SECURITY_OFFICER = "Security Officer"
    USER = "User"


A, S, U = Role.ADMINISTRATOR, Role.SECURITY_OFFICER, Role.USER

#: Who may do what: the seed's split duties. Anything not listed is refused.
PERMISSIONS: dict[str, frozenset[Role]] = {
    # keys and key sets: the Administrator (importing raw keys, creating or modifying keys and key sets)
    "create-key": frozenset({A}), "create-key-set": frozenset({A}), "add-key": frozenset({A}),
    "remove-key": frozenset({A}), "import-keys": frozenset({A}), "export-keys": frozenset({A}),
    # the database, its keys and its copies: the Administrator (the seed's kmsadmin scripts)
    "set-dbkey": frozenset({A}), "set-backupkey": frozenset({A}), "view-backupkey": frozenset({A}),
    "set-kmsid": frozenset({A}), "backup": frozenset({A}), "restore": frozenset({A}), "standby": frozenset({A}),
    "failover": frozenset({A}),
    # enabling drives for encryption: the Security Officer
    "write-ekt": frozenset({S}), "add-token": frozenset({S}),
    # the daily work: the User (entering drives, mapping key sets to pools, writing OKTs)
    "import-drive": frozenset({U}), "set-drive-ip": frozenset({U}), "create-pool": frozenset({U}),
    "add-drive": frozenset({U}), "verify-pool": frozenset({S, U}),
    "map": frozenset({U}), "apply": frozenset({U}), "write-okt": frozenset({U}),
    # shared
    "describe": frozenset({A, S, U}), "delete": frozenset({A, U}), "token-status": frozenset({S, U}),
    "list": frozenset({A, S, U}), "show": frozenset({A, S, U}), "reconcile": frozenset({S, U}), "plan": frozenset({A, S, U}), "audit": frozenset({A, S}),
    # two people: a User and an Administrator each ask
    "deactivate-key": frozenset({A, U}), "reactivate-key": frozenset({A, U}),
    # logins: whose a role may create or modify is in MANAGES
    "create-operator": frozenset({A, S}), "set-operator-active": frozenset({A, S}),
}

#: Who may create or modify whose login.
MANAGES: dict[Role, frozenset[Role]] = {A: frozenset({A, S}), S: frozenset({S, U}), U: frozenset()}


class NotPermitted(KmsError):
    """The operator's role does not allow the action; the message says which role does."""


class SessionError(KmsError):
    """No valid session: not logged in, expired, or a password to change first."""


@dataclass(frozen=True)
class Operator:
    name: str
    role: Role
    active: bool
    must_change: bool


def _hash(password: str, salt: bytes) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**14, r=8, p=1).derive(password.encode())


def enable_roles(store: KmsStore) -> None:
    """Roles from now on: only the default KmsAdm exists, with the password common to every KMS."""
    salt = os.urandom(16)
    with store.transaction() as conn:
        conn.execute("INSERT INTO operators VALUES (?,?,?,?,1,1,'factory')",
                     (DEFAULT_ADMIN, A.value, salt, _hash(DEFAULT_PASSWORD, salt)))
        conn.execute("INSERT OR REPLACE INTO meta VALUES ('roles', 1)")
        store.audit("enable_roles", {"default_operator": DEFAULT_ADMIN})


def roles_enabled(store: KmsStore) -> bool:
    row = store._conn.execute("SELECT value FROM meta WHERE name='roles'").fetchone()
    return bool(row and row[0])


def operator(store: KmsStore, name: str) -> Operator:
    row = store._conn.execute("SELECT name, role, active, must_change FROM operators WHERE name=?", (name,)).fetchone()
    if row is None:
        raise NotFound(f"no operator named {name!r}")
    return Operator(row[0], Role(row[1]), bool(row[2]), bool(row[3]))


NO_LOGINS = ("this store has no operator logins (made with 't10k kms init --no-roles'): its commands need no "
             "login and it has no operators to create; for operators and roles make a store without --no-roles "
             "('t10k kms init --store NEW', then log in as KmsAdm)")


def _require_roles(store: KmsStore) -> None:
    if not roles_enabled(store):
        raise SessionError(NO_LOGINS)


def login(store: KmsStore, name: str, password: str) -> str:
    """A new session token (keep it secret: it acts as the operator until logout or expiry)."""
    _require_roles(store)
    row = store._conn.execute("SELECT salt, pw_hash, active FROM operators WHERE name=?", (name,)).fetchone()
    if row is None or not hmac.compare_digest(_hash(password, bytes(row[0])), bytes(row[1])):
        with store.transaction():
            store.operator = name
            store.audit("login_failed", {"operator": name})
        raise SessionError("wrong operator name or password")
    if not row[2]:
        raise SessionError(f"operator {name!r} is inactive: an operator who manages that role can reactivate it")
    token = os.urandom(24).hex()
    with store.transaction() as conn:
        conn.execute("INSERT INTO sessions VALUES (?,?,?)", (hashlib.sha256(token.encode()).digest(), name, now_us()))
        store.operator = name
        store.audit("login", {"operator": name})
    return token


def session_operator(store: KmsStore, token: str | None, *, idle_s: float = SESSION_IDLE_S) -> Operator:
    """The operator a session stands for; an expired session is ended (and a backup taken)."""
    _require_roles(store)
    if not token:
        raise SessionError("log in first: t10k kms login --operator NAME (then export T10K_SESSION=...)")
    key = hashlib.sha256(token.encode()).digest()
    row = store._conn.execute("SELECT operator, last_used FROM sessions WHERE token_hash=?", (key,)).fetchone()
    if row is None:
        raise SessionError("that session has ended: log in again")
    if now_us() - row[1] > idle_s * 1e6:
        end_session(store, token, reason="session expiry")
        raise SessionError(f"the session expired after {idle_s:.0f} s without use: log in again")
    store._conn.execute("UPDATE sessions SET last_used=? WHERE token_hash=?", (now_us(), key))
    who = operator(store, row[0])
    store.operator = who.name
    return who


def end_session(store: KmsStore, token: str, *, reason: str = "logout") -> None:
    from .backup import backup_after

    with store.transaction() as conn:
        conn.execute("DELETE FROM sessions WHERE token_hash=?", (hashlib.sha256(token.encode()).digest(),))
        store.audit(reason.replace(" ", "_"), {"operator": store.operator})
    backup_after(store, reason)  # the seed: a backup at logout and at session expiry


def authorize(who: Operator, action: str) -> None:
    if who.must_change and action != "passwd":
        raise SessionError(f"{who.name} must change the default password first: t10k kms passwd")
    allowed = PERMISSIONS.get(action, frozenset())
    if who.role not in allowed:
        roles = " or ".join(r.value for r in sorted(allowed, key=lambda r: r.value)) or "no role"
        raise NotPermitted(f"{who.name} ({who.role.value}) may not {action}: that is for {roles}")


def create_operator(store: KmsStore, by: Operator, name: str, role: Role, password: str) -> None:
    if role not in MANAGES[by.role]:
        raise NotPermitted(f"{_a(by.role)} cannot create {_a(role)} login "
                           f"(Administrators create Administrators and Security Officers; "
                           f"Security Officers create Security Officers and Users)")
    _check_password(password)
    salt = os.urandom(16)
    with store.transaction() as conn:
        if conn.execute("SELECT 1 FROM operators WHERE name=?", (name,)).fetchone():
            raise RuleViolation("names are permanent", f"operator {name!r} exists", "Choose another name.")
        conn.execute("INSERT INTO operators VALUES (?,?,?,?,0,1,?)", (name, role.value, salt, _hash(password, salt),
                                                                      by.name))
        store.audit("create_operator", {"operator": name, "role": role.value})


def set_password(store: KmsStore, who: Operator, password: str) -> None:
    if password == DEFAULT_PASSWORD:
        raise RuleViolation("the default password is common to every KMS", "that is the default password",
                            "Choose another.")
    _check_password(password)
    salt = os.urandom(16)
    with store.transaction() as conn:
        conn.execute("UPDATE operators SET salt=?, pw_hash=?, must_change=0 WHERE name=?",
                     (salt, _hash(password, salt), who.name))
        store.audit("passwd", {"operator": who.name})


def set_active(store: KmsStore, by: Operator, name: str, active: bool) -> None:
    target = operator(store, name)
    if target.role not in MANAGES[by.role]:
        raise NotPermitted(f"{_a(by.role)} cannot modify {_a(target.role)} login")
    with store.transaction() as conn:
        conn.execute("UPDATE operators SET active=? WHERE name=?", (int(active), name))
        if not active:
            conn.execute("DELETE FROM sessions WHERE operator=?", (name,))
        store.audit("activate_operator" if active else "deactivate_operator", {"operator": name})


def _a(role: Role) -> str:
    return {Role.ADMINISTRATOR: "an ", Role.SECURITY_OFFICER: "a ", Role.USER: "a "}[role] + role.value


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise RuleViolation("passwords have at least 8 characters", "the password is too short", "Choose a longer one.")


def request_key_state(store: KmsStore, who: Operator, key_id: bytes, active: bool) -> str:
    """The two-person rule: the change happens when a User and an Administrator have both asked."""
    store.key_value(key_id)  # it exists
    action = "reactivate" if active else "deactivate"
    with store.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO key_state_requests VALUES (?,?,?,?)",
                     (key_id, action, who.role.value, who.name))
        roles = {r[0] for r in conn.execute("SELECT role FROM key_state_requests WHERE key_id=? AND action=?",
                                            (key_id, action))}
        if roles >= {A.value, U.value}:
            conn.execute("DELETE FROM key_state_requests WHERE key_id=?", (key_id,))
            if active:
                conn.execute("DELETE FROM inactive_keys WHERE key_id=?", (key_id,))
            else:
                conn.execute("INSERT OR IGNORE INTO inactive_keys VALUES (?)", (key_id,))
            store.audit(f"{action}_key", {"key_id": key_id.hex(), "second": who.name})
            return f"key {key_id.hex()} {action}d"
        store.audit(f"{action}_key_requested", {"key_id": key_id.hex()})
        other = U if who.role is A else A
        return f"{action[:-1]}ion of key {key_id.hex()} requested; {_a(other)} must ask for it too"


