"""The console's pages and actions through Starlette's TestClient (no sockets): logins, roles,
anti-forgery, the seed's limitations named in refusals, and no key material anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
from starlette.testclient import TestClient

from kms_client import operators
from kms_client.store import KmsStore
from kms_console import make_app
from kms_console.auth import COOKIE
from protocol.manufacturing import format_manufacturing, make_drives

from .consolesite import ADMIN_PASSWORD, PASSWORDS, add_operators, csrf_of, make_store

ROOT = Path(__file__).resolve().parents[2]
SCREENS = ["/library", "/tokens", "/mappings", "/keys", "/drives", "/pools", "/operators", "/audit", "/backups",
           "/exchange", "/plan"]


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    make_store(tmp_path / "kms").close()
    return tmp_path / "kms"


@pytest.fixture
def ready_dir(store_dir: Path) -> Path:
    store = KmsStore.open(store_dir)
    add_operators(store)
    store.close()
    return store_dir


def client(store_dir: Path) -> TestClient:
    return TestClient(make_app(store_dir), base_url="https://testserver")


def login(c: TestClient, name: str, password: str) -> str:
    page = c.post("/login", data={"operator": name, "password": password, "next": "/keys"})
    assert page.status_code == 200, page.text
    return page.text


@pytest.fixture
def as_role(ready_dir: Path) -> Iterator[dict[str, TestClient]]:
    clients = {}
    for name in ("admin", "officer", "user"):
        c = client(ready_dir)
        login(c, name, PASSWORDS[name])
        clients[name] = c
    kmsadm = client(ready_dir)
    login(kmsadm, "KmsAdm", ADMIN_PASSWORD)
    clients["KmsAdm"] = kmsadm
    yield clients


def test_kmsadm_must_change_the_default_password_first(store_dir: Path) -> None:
    c = client(store_dir)
    assert c.get("/keys").url.path == "/login"  # not logged in
    page = c.post("/login", data={"operator": "KmsAdm", "password": "kmsadm", "next": "/keys"})
    assert page.url.path == "/passwd" and "default password" in page.text
    cookie = page.history[0].headers["set-cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in cookie
    assert cookie.startswith(COOKIE + "=")
    assert c.get("/keys").url.path == "/passwd"  # every screen sends it back until then
    refused = c.post("/passwd", data={"csrf": csrf_of(page.text), "password": "kmsadm", "again": "kmsadm"})
    assert refused.status_code == 400 and "default password" in refused.text
    differ = c.post("/passwd", data={"csrf": csrf_of(page.text), "password": "abcdefgh1", "again": "abcdefgh2"})
    assert differ.status_code == 400 and "differ" in differ.text
    done = c.post("/passwd", data={"csrf": csrf_of(page.text), "password": ADMIN_PASSWORD, "again": ADMIN_PASSWORD})
    assert done.url.path == "/library" and "KmsAdm (Administrator)" in done.text
    assert c.get("/keys").status_code == 200


def test_a_wrong_password_is_refused_and_audited(store_dir: Path) -> None:
    c = client(store_dir)
    elsewhere = c.post("/login", data={"operator": "KmsAdm", "password": "kmsadm"},
                       headers={"origin": "https://evil.example"})
    assert elsewhere.status_code == 401 and "only its own pages may post" in elsewhere.text
    assert COOKIE not in c.cookies
    page = c.post("/login", data={"operator": "KmsAdm", "password": "nope"})
    assert page.status_code == 401 and "wrong operator name or password" in page.text
    store = KmsStore.open(store_dir)
    assert store.audit_records()[-1].action == "login_failed"


def test_every_screen_serves_each_role_or_names_who_may(as_role: dict[str, TestClient]) -> None:
    for name, c in as_role.items():
        for path in SCREENS:
            page = c.get(path)
            if path in ("/audit",) and name == "user":
                assert page.status_code == 403 and "Administrator or Security Officer" in page.text
            elif path == "/backups" and name in ("user", "officer"):
                assert page.status_code == 403 and "that is for Administrator" in page.text
            else:
                assert page.status_code == 200, (name, path, page.text)
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
            assert page.headers["cache-control"] == "no-store"


def test_a_refused_action_names_the_role_that_may(as_role: dict[str, TestClient]) -> None:
    user = as_role["user"]
    page = user.get("/keys")
    refused = user.post("/keys/create", data={"csrf": csrf_of(page.text), "description": "x"})
    assert refused.status_code == 403
    assert "user (User) may not create-key: that is for Administrator" in refused.text
    admin = as_role["admin"]
    made = admin.post("/keys/create", data={"csrf": csrf_of(admin.get("/keys").text), "description": "first"})
    assert made.status_code == 200 and "key 0a0b0c0d00000001 created" in made.text


def test_forms_need_the_sessions_anti_forgery_token(as_role: dict[str, TestClient]) -> None:
    admin = as_role["admin"]
    assert admin.post("/keys/create", data={"description": "x"}).status_code == 403
    other = csrf_of(as_role["KmsAdm"].get("/keys").text)  # another session's token
    refused = admin.post("/keys/create", data={"csrf": other})
    assert refused.status_code == 403 and "anti-forgery" in refused.text
    good = csrf_of(admin.get("/keys").text)
    cross = admin.post("/keys/create", data={"csrf": good}, headers={"origin": "https://evil.example"})
    assert cross.status_code == 403 and "only its own pages may post" in cross.text
    store = KmsStore.open(as_role["admin"].app.state.console.store_dir)
    assert store.key_ids() == []


def _mapping_setup(as_role: dict[str, TestClient], tmp_path: Path) -> None:
    admin, user, officer = as_role["admin"], as_role["user"], as_role["officer"]
    token = csrf_of(admin.get("/keys").text)
    assert admin.post("/keys/create-key-set", data={"csrf": token, "name": "KS1"}).status_code == 200
    assert admin.post("/keys/create", data={"csrf": token, "key_set": "KS1"}).status_code == 200
    maker = tmp_path / "cd.json"
    maker.write_text(format_manufacturing(make_drives(1)))
    page = user.post("/drives/import", data={"csrf": csrf_of(user.get("/drives").text), "manufacturing": str(maker),
                                             "csn": "5700000000000001", "name": "drive-01", "ip": "127.0.0.101"})
    assert "drive drive-01 (CSN 5700000000000001" in page.text, page.text
    assert officer is not None
    assert user.post("/pools/create", data={"csrf": csrf_of(user.get("/pools").text), "name": "pool-1"}).status_code == 200


def test_mapping_refusals_name_their_chapter_4_limitation(as_role: dict[str, TestClient], tmp_path: Path) -> None:
    _mapping_setup(as_role, tmp_path)
    user, admin = as_role["user"], as_role["admin"]
    token = csrf_of(user.get("/mappings").text)
    empty = user.post("/mappings/pool-1", data={"csrf": token, "write_key": "0a0b0c0d00000001"})
    assert empty.status_code == 409 and "a mapping always has at least one key" in empty.text
    saved = user.post("/mappings/pool-1", data={"csrf": token, "key_set": "KS1", "write_key": "0a0b0c0d00000001"})
    assert saved.status_code == 200 and "pool pool-1: mapping saved, 1 key(s)" in saved.text
    applied = user.post("/mappings/pool-1/apply", data={"csrf": token})
    assert "mapping applied, new timestamp" in applied.text
    active = admin.post("/keys/create", data={"csrf": csrf_of(admin.get("/keys").text), "key_set": "KS1"})
    assert active.status_code == 409 and "limitation 9" in active.text
    pool_drive = user.post("/pools/add-drive", data={"csrf": token, "pool": "pool-1", "drive": "drive-01"})
    assert pool_drive.status_code == 409 and "limitation 5" in pool_drive.text


def test_deactivating_a_key_takes_two_approvals(as_role: dict[str, TestClient], tmp_path: Path) -> None:
    _mapping_setup(as_role, tmp_path)
    user, admin, officer = as_role["user"], as_role["admin"], as_role["officer"]
    key = "0a0b0c0d00000001"
    refused = officer.post("/keys/deactivate", data={"csrf": csrf_of(officer.get("/keys").text), "key": key})
    assert refused.status_code == 403 and "that is for Administrator or User" in refused.text
    first = user.post("/keys/deactivate", data={"csrf": csrf_of(user.get("/keys").text), "key": key})
    assert "an Administrator must ask for it too" in first.text and "deactivate approved by user (User)" in first.text
    again = user.post("/keys/deactivate", data={"csrf": csrf_of(user.get("/keys").text), "key": key})
    assert "an Administrator must ask for it too" in again.text  # the same person twice is still one approval
    second = admin.post("/keys/deactivate", data={"csrf": csrf_of(admin.get("/keys").text), "key": key})
    assert f"key {key} deactivated" in second.text
    assert f'<tr data-key="{key}"><td class="key-id">{key}</td><td class="state">inactive</td>' in second.text


def test_no_page_holds_key_material(as_role: dict[str, TestClient], tmp_path: Path) -> None:
    _mapping_setup(as_role, tmp_path)
    store = KmsStore.open(as_role["admin"].app.state.console.store_dir)
    secrets = [store.key_value(k).hex() for k in store.key_ids()] + [store._dbkey.hex()]
    secrets += [store.pckey("drive-01").hex()]
    for c in as_role.values():
        for path in SCREENS + ["/audit/verify"]:
            text = c.get(path).text.lower()
            for secret in secrets:
                assert secret not in text, path


def test_plan_chart_of_the_seeds_example(as_role: dict[str, TestClient]) -> None:
    user = as_role["user"]
    plan = (ROOT / "lab/topologies/company-xyz-plan.toml").read_text()
    page = user.post("/plan", data={"csrf": csrf_of(user.get("/plan").text), "plan": plan})
    assert page.status_code == 200 and '<svg xmlns="http://www.w3.org/2000/svg" class="plan-chart"' in page.text
    assert page.text.count('<g class="site"') == 8 and "overbooked" not in page.text.split("<svg")[1].split(
        "</svg>")[0].replace("(overbooked)", "")
    assert "London, year 5: 30 keys (fits)" in page.text  # (1 + 5 senders) x 5 years
    quarterly = user.post("/plan", data={"csrf": csrf_of(page.text), "plan": plan, "rotations": "4"})
    assert 'class="point overbooked"' in quarterly.text and "London (overbooked)" in quarterly.text
    # the same verdicts as `t10k kms plan --rotations-per-year 4`
    assert "OVERBOOKED from year 2, rotation 2" in quarterly.text and "OVERBOOKED from year 3, rotation 1" in quarterly.text
    assert quarterly.text.count("OVERBOOKED from") == 2


def test_logout_ends_the_session_with_a_backup(as_role: dict[str, TestClient]) -> None:
    admin = as_role["admin"]
    assert "<td>logout</td>" not in admin.get("/backups").text
    page = admin.post("/logout", data={"csrf": csrf_of(admin.get("/keys").text)})
    assert page.url.path == "/login" and "logged out" in page.text
    assert admin.get("/keys").url.path == "/login"
    again = client(admin.app.state.console.store_dir)
    login(again, "admin", PASSWORDS["admin"])
    assert again.get("/backups").text.count("<td>logout</td>") == 1  # the seed: a backup at logout


def test_an_idle_session_expires(as_role: dict[str, TestClient], monkeypatch: pytest.MonkeyPatch) -> None:
    admin = as_role["admin"]
    assert admin.get("/keys").status_code == 200
    later = operators.now_us() + (operators.SESSION_IDLE_S + 1) * 1_000_000
    monkeypatch.setattr(operators, "now_us", lambda: later)
    page = admin.get("/keys")
    assert page.url.path == "/login" and "expired after 600 s without use" in page.text


def test_a_store_without_logins_is_not_served(tmp_path: Path) -> None:
    import os

    KmsStore.create(tmp_path / "open", dbkey=os.urandom(32), kms_id=b"\x01\x02\x03\x04").close()
    with pytest.raises(Exception, match="no operator logins"):
        make_app(tmp_path / "open")


def test_export_import_backups_and_operators(as_role: dict[str, TestClient], tmp_path: Path) -> None:
    _mapping_setup(as_role, tmp_path)
    admin, user, kmsadm = as_role["admin"], as_role["user"], as_role["KmsAdm"]
    token = csrf_of(admin.get("/exchange").text)
    relative = admin.post("/exchange/export", data={"csrf": token, "key": "0a0b0c0d00000001", "out": "keys.xml"})
    assert relative.status_code == 400 and "absolute path on the KMS host" in relative.text
    out = tmp_path / "keys.xml"
    done = admin.post("/exchange/export", data={"csrf": token, "key": "0a0b0c0d00000001", "out": str(out)})
    assert done.status_code == 200 and f"1 key(s) exported to {out}" in done.text and out.stat().st_mode & 0o777 == 0o600
    store = KmsStore.open(admin.app.state.console.store_dir)
    assert store.key_value(bytes.fromhex("0a0b0c0d00000001")).hex() not in done.text.lower()
    again = admin.post("/exchange/import", data={"csrf": token, "file": str(out)})
    assert again.status_code == 409 and "already present" in again.text
    refused = user.post("/exchange/export", data={"csrf": csrf_of(user.get("/exchange").text), "out": str(out)})
    assert refused.status_code == 403 and "that is for Administrator" in refused.text

    taken = admin.post("/backups/take", data={"csrf": csrf_of(admin.get("/backups").text)})
    assert "written" in taken.text and "operator request (console)" in taken.text

    token = csrf_of(kmsadm.get("/operators").text)
    made = kmsadm.post("/operators/create", data={"csrf": token, "name": "carol", "role": "Security Officer",
                                                  "password": "carol-pass-1"})
    assert made.status_code == 200 and "operator carol (Security Officer) created" in made.text
    not_mine = kmsadm.post("/operators/create", data={"csrf": token, "name": "dave", "role": "User",
                                                      "password": "dave-pass-1"})
    assert not_mine.status_code == 403 and "an Administrator cannot create a User login" in not_mine.text
    off = kmsadm.post("/operators/set-active", data={"csrf": token, "name": "carol", "state": "inactive"})
    assert "operator carol is inactive" in off.text
    audit = as_role["officer"].get("/audit/verify")
    assert audit.status_code == 200 and "intact" in audit.text and "create_operator" in audit.text
