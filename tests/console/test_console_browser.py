"""The console in a real browser (chromium, Selenium): KmsAdm's first login, a refusal naming the
role, the plan chart of the seed's example. The screenshots in docs/console/ are taken here."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from kms_client.store import KmsStore

from .browser import Browser
from .console_process import ConsoleProcess
from .consolesite import ADMIN_PASSWORD, PASSWORDS, add_operators, make_store

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Browser]:
    store: KmsStore = make_store(tmp_path / "kms")
    store.close()
    with ConsoleProcess(tmp_path / "kms") as console:
        browser = Browser(console.url)
        try:
            yield browser
        finally:
            browser.close()


def test_log_in_and_change_kmsadms_password(served: Browser) -> None:
    b = served
    b.open("/keys")
    assert b.path == "/login"  # not logged in
    b.type("#operator", "KmsAdm")
    b.type("#password", "kmsadm")
    b.shot("login")
    b.click("#login-button")
    b.wait(lambda b: b.path == "/passwd", "the password change")
    assert "default password" in b.text("#must-change")
    b.open("/mappings")
    assert b.path == "/passwd"  # nothing else until it is changed
    b.type("#new-password", ADMIN_PASSWORD)
    b.type("#again-password", ADMIN_PASSWORD)
    b.click("#passwd-button")
    b.wait(lambda b: b.path == "/library", "the library")
    assert b.text("#who") == "KmsAdm (Administrator)"
    cookie = b.driver.get_cookie("__Host-t10k-session")
    assert cookie is not None and cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    b.click(".logout button")
    b.wait(lambda b: b.path == "/login", "the login page")
    b.login("KmsAdm", "kmsadm")
    assert "wrong operator name or password" in b.text("#error")


def test_a_refused_action_names_the_role_that_may(served: Browser, tmp_path: Path) -> None:
    store = KmsStore.open(tmp_path / "kms")
    add_operators(store)
    store.close()
    b = served
    b.login("user", PASSWORDS["user"])
    b.wait(lambda b: b.path == "/keys" or b.path == "/library", "a screen")
    b.open("/keys")
    b.type("#create-key input[name=description]", "made by a User")
    b.click("#create-key button")
    b.wait(lambda b: b.finds("#error"), "a refusal")
    assert "user (User) may not create-key: that is for Administrator" in b.text("#error")
    b.open("/keys")
    assert "No keys yet." in b.text("#keys")
    b.login("admin", PASSWORDS["admin"])
    b.open("/keys")
    b.type("#create-key-set input[name=name]", "KS1")
    b.click("#create-key-set button")
    b.wait(lambda b: "key set KS1 created" in b.text("#message"), "the key set")
    b.click("#create-key button")
    b.wait(lambda b: "created" in b.text("#message"), "the new key")
    b.shot("keys")


def test_the_plan_chart_of_the_seeds_example(served: Browser, tmp_path: Path) -> None:
    store = KmsStore.open(tmp_path / "kms")
    add_operators(store)
    store.close()
    b = served
    b.login("user", PASSWORDS["user"])
    b.open("/plan")
    plan = (ROOT / "lab/topologies/company-xyz-plan.toml").read_text()
    b.driver.execute_script("document.getElementById('plan-text').value = arguments[0];", plan)
    b.click("#draw-plan")
    b.wait(lambda b: b.finds("#plan-chart svg"), "the chart")
    sites = b.finds("#plan-chart svg g.site")
    assert [s.get_attribute("data-site") for s in sites] == ["Tokyo", "San Francisco", "New York", "Chicago",
                                                            "London", "Singapore", "Frankfurt", "Sao Paulo"]
    assert b.finds("#plan-chart svg line.limit") and not b.finds("#plan-chart circle.overbooked")
    london = b.find("#plan-table").text.splitlines()
    assert any(line == "London 6 12 18 24 30 30 30 30 fits" for line in london), london
    b.shot("plan")
    b.type("#rotations", "4")
    b.click("#draw-plan")
    b.wait(lambda b: b.finds("#plan-chart circle.overbooked"), "overbooked points")
    verdicts = [td.text for td in b.finds("#plan-table td.verdict")]
    assert verdicts.count("fits") == 6 and "OVERBOOKED from year 2, rotation 2" in verdicts
    assert b.find("#plan-chart svg").size["width"] > 500  # drawn, not only present
    b.shot("plan-overbooked")
