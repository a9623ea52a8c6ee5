"""No command overwrites a file holding keys without --force (issue 12); each says so in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.cli import main


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], tmp: Path) -> None:
        self.capsys, self.tmp = capsys, tmp
        self.store = ["--store", str(tmp / "kms")]

    def __call__(self, *args: str, rc: int = 0) -> tuple[str, str]:
        code = main(list(args))
        out, err = self.capsys.readouterr()
        assert code == rc, f"t10k {' '.join(args)} exited {code}: {err}"
        return out, err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    c = Cli(capsys, tmp_path)
    c("drive", "manufacture", "--count", "1", "--out", str(tmp_path / "cd.json"), "--first-csn", "5700000000000001")
    c("kms", "init", "--no-roles", *c.store)
    c("kms", "import-drive", *c.store, "--manufacturing", str(tmp_path / "cd.json"), "--csn", "5700000000000001",
      "--name", "d0")
    return c


def refused(cli: Cli, path: Path, *args: str) -> None:
    """The command, run again onto ``path``, is refused in one line and leaves the file alone."""
    before = path.read_bytes()
    _, err = cli(*args, rc=1)
    assert err.count("\n") == 1 and str(path) in err and "--force" in err and "Traceback" not in err
    assert path.read_bytes() == before


def test_manufacture_keeps_its_pckeys(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "cd.json"
    args = ("drive", "manufacture", "--count", "1", "--out", str(out), "--first-csn", "5700000000000001")
    refused(cli, out, *args)
    before = out.read_bytes()
    cli(*args, "--force")
    assert out.read_bytes() != before and out.stat().st_mode & 0o777 == 0o600


def test_add_token_keeps_the_secret_and_registers_nothing(cli: Cli, tmp_path: Path) -> None:
    secret = tmp_path / "tok.secret"
    cli("kms", "add-token", *cli.store, "--name", "tok", "--ip", "127.0.0.21", "--secret-out", str(secret))
    refused(cli, secret, "kms", "add-token", *cli.store, "--name", "tok2", "--ip", "127.0.0.22", "--secret-out",
            str(secret))
    listed = json.loads(cli("kms", "list", *cli.store, "--json")[0])
    assert [t["name"] for t in listed["tokens"]] == ["tok"]  # tok2 was not registered with a secret nobody got
    cli("kms", "add-token", *cli.store, "--name", "tok2", "--ip", "127.0.0.22", "--secret-out", str(secret), "--force")
    assert secret.stat().st_mode & 0o777 == 0o600


def test_token_images_and_status_images(cli: Cli, tmp_path: Path) -> None:
    secret, image = tmp_path / "tok.secret", tmp_path / "ekt.img"
    cli("kms", "add-token", *cli.store, "--name", "tok", "--ip", "127.0.0.21", "--secret-out", str(secret))
    ekt = ("kms", "write-ekt", *cli.store, "--token", "tok", "--drive", "d0", "--use-pckey", "--image", str(image))
    cli(*ekt)
    device_key = json.loads(cli("kms", "show", "drive", "d0", *cli.store, "--json")[0])["device_key_id"]
    refused(cli, image, *ekt)
    assert json.loads(cli("kms", "show", "drive", "d0", *cli.store, "--json")[0])["device_key_id"] == device_key
    cli("kms", "create-key-set", *cli.store, "KS")
    key = cli("kms", "create-key", *cli.store, "--key-set", "KS")[0].strip()
    cli("kms", "create-pool", *cli.store, "P")
    cli("kms", "add-drive", *cli.store, "--pool", "P", "--drive", "d0")
    cli("kms", "map", *cli.store, "--pool", "P", "--key-set", "KS", "--write-key", key)
    okt = ("kms", "write-okt", *cli.store, "--token", "tok", "--pool", "P", "--image", str(image))
    refused(cli, image, *okt)
    cli(*okt, "--force")
    status = tmp_path / "status.img"
    save = ("token", "save-image", str(status), "--state", str(tmp_path / "token"), "--secret-file", str(secret))
    cli(*save)
    refused(cli, status, *save)
    cli(*save, "--force")


def test_key_exports(cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "keys.xml"
    cli("kms", "create-key", *cli.store)
    cli("kms", "export-keys", *cli.store, "--all", "--out", str(out))
    refused(cli, out, "kms", "export-keys", *cli.store, "--all", "--out", str(out))
    cli("kms", "export-keys", *cli.store, "--all", "--out", str(out), "--force")


def test_init_keeps_a_database_key_left_behind(cli: Cli, tmp_path: Path) -> None:
    (tmp_path / "kms" / "kms.sqlite3").unlink()
    for leftover in (tmp_path / "kms").glob("kms.sqlite3-*"):
        leftover.unlink()
    refused(cli, tmp_path / "kms" / "dbkey", "kms", "init", "--no-roles", *cli.store)
    cli("kms", "init", "--no-roles", *cli.store, "--force")
