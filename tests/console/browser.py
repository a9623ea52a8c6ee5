"""A real browser for the console's tests: Debian's chromium, headless, driven by Selenium through
Debian's chromedriver (scripts/bootstrap installs both; nothing is downloaded at run time).

Every wait is bounded. Screenshots of the main screens go to docs/console/ (README links them)
when T10K_SCREENSHOTS=docs/console is set.
"""

from __future__ import annotations

import shutil
import os
import tempfile
from pathlib import Path
from typing import Callable

from selenium import webdriver
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
#: Where screenshots go: docs/console/ when T10K_SCREENSHOTS=docs/console is set (how the README's
#: pictures are refreshed), else a scratch directory, so a test run leaves the tree as it was.
SHOTS = ROOT / os.environ.get("T10K_SCREENSHOTS", str(Path(tempfile.gettempdir()) / "t10k-console-shots"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
WAIT_S = 20.0


class Browser:
    def __init__(self, base_url: str) -> None:
        for exe in (CHROMIUM, CHROMEDRIVER):
            assert shutil.which(exe), f"{exe} is not installed: scripts/bootstrap test installs chromium and chromium-driver"
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):
            options.add_argument(arg)
        options.accept_insecure_certs = True  # the console's self-signed certificate (kms init made it)
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.set_page_load_timeout(WAIT_S)
        self.base = base_url.rstrip("/")

    def close(self) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        return "/" + self.driver.current_url.split("://", 1)[1].split("/", 1)[1].split("?")[0]

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def finds(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def type(self, css: str, text: str) -> None:
        field = self.find(css)
        field.clear()
        field.send_keys(text)

    def click(self, css: str) -> None:
        self.find(css).click()

    def login(self, name: str, password: str) -> None:
        self.open("/login")
        self.type("#operator", name)
        self.type("#password", password)
        self.click("#login-button")
        # Its answer, before the next step: a page opened at once could go out without the
        # session cookie and be sent back to the login page.
        self.wait(lambda b: b.path != "/login" or b.finds("#error"), "the login's answer")

    def wait(self, ready: Callable[[Browser], object], what: str, timeout_s: float = WAIT_S) -> object:
        def check(_: object) -> object:
            try:
                return ready(self)
            except (NoSuchElementException, StaleElementReferenceException):
                return False
        try:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.1).until(check)
        except TimeoutException:
            mains = self.finds("main")
            shown = (self.find("#alerts").text + "\n" + mains[0].text) if mains else self.driver.page_source
            raise AssertionError(f"after {timeout_s:.0f} s the page at {self.path} does not show {what}: "
                                 f"{shown[:2000]}") from None

    def attr(self, css: str, name: str) -> str:
        return self.find(css).get_attribute(name) or ""

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{name}.png"
        assert self.driver.save_screenshot(str(path)) and path.stat().st_size > 0, f"no screenshot {path}"
        return path
