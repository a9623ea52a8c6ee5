"""``t10k kms serve`` over a real socket: HTTPS with the certificate ``kms init`` made, and its
refusals (a store without logins; half a certificate)."""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.console.console_process import ConsoleProcess

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]


def _t10k(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_serve_speaks_https_with_the_certificate_init_made(tmp_path: Path) -> None:
    made = _t10k("kms", "init", "--store", str(tmp_path / "kms"), "--json")
    assert made.returncode == 0, made.stderr
    cert = Path(json.loads(made.stdout)["console_cert"])
    assert cert == tmp_path / "kms" / "console-cert.pem"
    assert (tmp_path / "kms" / "console-key.pem").stat().st_mode & 0o777 == 0o600
    with ConsoleProcess(tmp_path / "kms") as console:
        assert console.url.startswith("https://127.0.0.1:")
        trusted = ssl.create_default_context(cafile=str(cert))  # verified: the name and the certificate
        with urllib.request.urlopen(console.url + "login", context=trusted, timeout=10) as page:
            body = page.read().decode()
            assert page.status == 200 and "KmsAdm" in body
            assert "default-src 'self'" in page.headers["content-security-policy"]
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            urllib.request.urlopen(console.url + "login", context=ssl.create_default_context(), timeout=10)
        plain = console.url.replace("https://", "http://") + "login"
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(plain, timeout=10)  # no plain HTTP


def test_serve_finds_a_database_key_kept_apart_from_the_store(tmp_path: Path) -> None:
    """As every 'kms' command: the key file given at init (not in the store), or --dbkey-file."""
    keyfile = tmp_path / "elsewhere" / "dbkey"
    keyfile.parent.mkdir()
    assert _t10k("kms", "init", "--store", str(tmp_path / "kms"), "--dbkey-file", str(keyfile)).returncode == 0
    assert not (tmp_path / "kms" / "dbkey").exists()
    moved = tmp_path / "moved-dbkey"
    keyfile.rename(moved)
    lost = _t10k("kms", "serve", "--store", str(tmp_path / "kms"), "--listen", "127.0.0.1:0")
    assert lost.returncode == 1 and str(keyfile) in lost.stderr and "Traceback" not in lost.stderr
    with ConsoleProcess(tmp_path / "kms", extra=("--dbkey-file", str(moved))) as console:
        trusted = ssl.create_default_context(cafile=str(tmp_path / "kms" / "console-cert.pem"))
        with urllib.request.urlopen(console.url + "login", context=trusted, timeout=10) as page:
            assert page.status == 200


def test_serve_refuses_a_store_without_logins(tmp_path: Path) -> None:
    assert _t10k("kms", "init", "--store", str(tmp_path / "kms"), "--no-roles").returncode == 0
    result = _t10k("kms", "serve", "--store", str(tmp_path / "kms"), "--listen", "127.0.0.1:0")
    assert result.returncode == 1 and "has no operator logins" in result.stderr


def test_serve_wants_both_halves_of_a_given_certificate(tmp_path: Path) -> None:
    assert _t10k("kms", "init", "--store", str(tmp_path / "kms")).returncode == 0
    result = _t10k("kms", "serve", "--store", str(tmp_path / "kms"), "--cert", str(tmp_path / "kms/console-cert.pem"))
    assert result.returncode == 1 and "give both --cert and --key" in result.stderr


def test_the_t10k_command_and_the_daemons_start_without_the_web_stack() -> None:
    """``t10k token run`` and every other command go through lab.cli: the console's stack loads
    only when the console is made."""
    code = ("import sys, lab.cli; lab.cli.build_parser(); web = sorted({m.split('.')[0] for m in sys.modules} & {'starlette', 'jinja2', "
            "'uvicorn'}); print(web)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
