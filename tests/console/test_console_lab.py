"""``t10k lab up --console --mqtt`` and ``t10k lab demo --keep --console``: the console started
beside a lab, its URL printed, and (lab up) the library live from the daemons' broker."""

from __future__ import annotations

import http.cookiejar
import json
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.integration.test_mqtt import Broker

from .consolesite import ADMIN_PASSWORD

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]


class Session:
    """A browser's worth of HTTPS for scripts: cookies, redirects, the store's certificate trusted."""

    def __init__(self, base: str, cafile: Path) -> None:
        self.base = base.rstrip("/")
        context = ssl.create_default_context(cafile=str(cafile))
        self.opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=context),
                                                  urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def get(self, path: str) -> str:
        with self.opener.open(self.base + path, timeout=20) as page:
            return page.read().decode()

    def post(self, path: str, data: dict[str, str]) -> tuple[str, str]:
        body = urllib.parse.urlencode(data).encode()
        with self.opener.open(self.base + path, data=body, timeout=20) as page:
            return page.url, page.read().decode()

    def first_login(self) -> None:
        url, page = self.post("/login", {"operator": "KmsAdm", "password": "kmsadm"})
        assert url.endswith("/passwd"), url
        csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
        assert csrf
        url, _ = self.post("/passwd", {"csrf": csrf.group(1), "password": ADMIN_PASSWORD, "again": ADMIN_PASSWORD})
        assert url.endswith("/library"), url

    def library_until(self, ready: re.Pattern[str], timeout_s: float = 90.0) -> str:
        """Read the live stream until a library event matches ``ready``."""
        deadline = time.monotonic() + timeout_s
        with self.opener.open(self.base + "/library/stream", timeout=20) as stream:
            event: list[str] = []
            while time.monotonic() < deadline:
                line = stream.readline().decode()
                if line.startswith("data: "):
                    event.append(line[6:])
                elif line == "\n" and event:
                    drawn = "".join(event)
                    if ready.search(drawn):
                        return drawn
                    event = []
        raise AssertionError(f"the live library never matched {ready.pattern}")


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_lab_up_serves_the_console_with_the_library_live(tmp_path: Path) -> None:
    broker = Broker(tmp_path)
    broker.start()
    state = tmp_path / "xyz"
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "lab", "up", "lab/topologies/company-xyz.toml",
                             "--state", str(state), "--mode", "loopback", "--console", "127.0.0.1:0",
                             "--mqtt", broker.url, "--json"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for _ in range(10_000):  # the report is one indented JSON object; the lab then runs until SIGINT
            line = proc.stdout.readline()
            assert line, f"lab up ended: {''.join(lines)}"
            lines.append(line)
            if line == "}\n":
                break
        report = json.loads("".join(lines))
        assert report["console"].startswith("https://127.0.0.1:")
        web = Session(report["console"], state / "kms" / "console-cert.pem")
        web.first_login()
        drawn = web.library_until(re.compile(r'(data-led="RED".*){16}', re.S))
        assert drawn.count('class="drive"') == 16 and 'data-token="tokyo-a"' in drawn
    finally:
        _stop(proc)
        broker.stop()


def test_lab_demo_keep_serves_the_console_on_the_kept_store(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "lab", "demo", "--keep", str(tmp_path / "demo"),
                             "--console", "127.0.0.1:0"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        for _ in range(1000):
            line = proc.stdout.readline()
            assert line, "the demo ended without serving the console"
            found = re.search(r"KMS console serving at (https://\S+/)", line)
            if found:
                url = found.group(1)
                break
        web = Session(url, tmp_path / "demo" / "kms" / "console-cert.pem")
        web.first_login()
        drives = web.get("/drives")
        assert drives.count("enabled (device key") == 8  # the demo's drives, in the kept store
    finally:
        _stop(proc)
