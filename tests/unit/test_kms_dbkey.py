"""The database key need not sit beside the database (issue 13, low): a key file elsewhere,
$T10K_DBKEY, or a prompt on a terminal; one place finds it for every command.

Through the real CLI (in process, or under a pseudo-terminal for the prompt).
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import sys
import time
from pathlib import Path

import pytest

from kms_client.errors import StoreDamaged, StoreError
from kms_client.store import DBKEY_NAME, KmsStore
from kms_client.storefiles import DBKEY_ENV, DbKeyMissing, DbKeySource
from lab.cli import main

ROOT = Path(__file__).resolve().parents[2]


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str], tmp: Path) -> None:
        self.capsys, self.tmp = capsys, tmp

    def __call__(self, *args: str, rc: int = 0) -> tuple[str, str]:
        code = main(list(args))
        out, err = self.capsys.readouterr()
        assert code == rc, f"t10k {' '.join(args)} exited {code}: {err}"
        return out, err

    def json(self, *args: str) -> dict[str, object]:
        return json.loads(self(*args, "--json")[0])  # type: ignore[no-any-return]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    monkeypatch.delenv(DBKEY_ENV, raising=False)
    return Cli(capsys, tmp_path)


def _one_line_naming_the_ways(err: str) -> None:
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--dbkey-file PATH" in err and "T10K_DBKEY" in err and "terminal" in err and "kms restore" in err


def test_a_key_file_elsewhere_serves_every_command_and_none_sits_beside_the_store(cli: Cli, tmp_path: Path) -> None:
    store, keyfile = tmp_path / "kms", tmp_path / "vault" / "kms.dbkey"
    keyfile.parent.mkdir()
    made = cli.json("kms", "init", "--no-roles", "--store", str(store), "--dbkey-file", str(keyfile))
    assert made["dbkey_file"] == str(keyfile.resolve())
    assert not (store / DBKEY_NAME).exists() and keyfile.stat().st_mode & 0o777 == 0o600
    key_id = cli("kms", "create-key", "--store", str(store))[0].strip()  # no option: the store names the file
    assert [k["key_id"] for k in cli.json("kms", "list", "--store", str(store))["keys"]] == [key_id]  # type: ignore[index]

    moved = tmp_path / "elsewhere.dbkey"
    keyfile.rename(moved)  # the medium is not mounted
    _, err = cli("kms", "list", "--store", str(store), rc=1)
    _one_line_naming_the_ways(err)
    assert str(keyfile.resolve()) in err and "not there" in err
    assert cli("kms", "list", "--store", str(store), "--dbkey-file", str(moved))[0].count(key_id) == 1


def test_a_key_file_made_first_is_used_as_it_is(cli: Cli, tmp_path: Path) -> None:
    keyfile = tmp_path / "kms.dbkey"
    key = os.urandom(32).hex()
    keyfile.write_text(key + "\n")
    cli("kms", "init", "--no-roles", "--store", str(tmp_path / "kms"), "--dbkey-file", str(keyfile))
    assert keyfile.read_text().strip() == key
    assert KmsStore.open(tmp_path / "kms", dbkey=DbKeySource(environ={DBKEY_ENV: key})).key_ids() == []


def test_the_key_from_the_environment_is_kept_nowhere(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store, key = tmp_path / "kms", os.urandom(32).hex()
    monkeypatch.setenv(DBKEY_ENV, key)
    made = cli.json("kms", "init", "--no-roles", "--store", str(store))
    assert made["dbkey_file"] is None and not (store / DBKEY_NAME).exists()
    key_id = cli("kms", "create-key", "--store", str(store))[0].strip()
    assert key_id in cli("kms", "list", "--store", str(store))[0]
    assert not any(key in p.read_bytes().decode("latin-1") for p in store.rglob("*") if p.is_file())

    monkeypatch.setenv(DBKEY_ENV, os.urandom(32).hex())
    _, err = cli("kms", "list", "--store", str(store), rc=1)
    assert "the database key from $T10K_DBKEY is not the key of this store" in err
    monkeypatch.setenv(DBKEY_ENV, "abc")
    _, err = cli("kms", "list", "--store", str(store), rc=1)
    assert "$T10K_DBKEY is not a database key: it must be 64 hexadecimal characters" in err
    monkeypatch.delenv(DBKEY_ENV)
    _, err = cli("kms", "list", "--store", str(store), rc=1)
    _one_line_naming_the_ways(err)


def test_a_missing_key_is_a_clear_error_and_a_store_that_can_be_restored_over(tmp_path: Path) -> None:
    KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=b"\x01\x02\x03\x04").close()
    (tmp_path / "kms" / DBKEY_NAME).unlink()
    with pytest.raises(DbKeyMissing) as caught:
        KmsStore.open(tmp_path / "kms", dbkey=DbKeySource(environ={}, interactive=False))
    assert isinstance(caught.value, StoreDamaged)  # restore needs no login to a store nobody can open
    assert f"no database key for the KMS store in {tmp_path / 'kms'}" in str(caught.value)


def test_a_store_directory_alone_reveals_no_key(cli: Cli, tmp_path: Path) -> None:
    """Everything in the store directory (database, WAL, backups) copied, without the key file."""
    store, keyfile = tmp_path / "kms", tmp_path / "kms.dbkey"
    cli("kms", "init", "--no-roles", "--store", str(store), "--dbkey-file", str(keyfile))
    cli("drive", "manufacture", "--count", "2", "--out", str(tmp_path / "cd.json"), "--first-csn", "5700000000000001")
    for i in (1, 2):
        cli("kms", "import-drive", "--store", str(store), "--manufacturing", str(tmp_path / "cd.json"),
            "--csn", f"570000000000000{i}", "--name", f"d{i}")
    backup_key = os.urandom(32)
    (tmp_path / "backup.key").write_text(backup_key.hex())
    cli("kms", "set-backupkey", "--store", str(store), "--key-file", str(tmp_path / "backup.key"))
    cli("kms", "add-token", "--store", str(store), "--name", "tok", "--ip", "127.0.0.21",
        "--secret-out", str(tmp_path / "tok.secret"))
    for _ in range(3):
        cli("kms", "create-key", "--store", str(store))
    cli("kms", "write-ekt", "--store", str(store), "--token", "tok", "--drive", "d1", "--drive", "d2", "--use-pckey",
        "--image", str(tmp_path / "ekt.img"))
    cli("kms", "backup", "--store", str(store))
    opened = KmsStore.open(store)
    secrets = [bytes.fromhex(keyfile.read_text().strip()), backup_key, opened.token_secret("tok")]
    secrets += [opened.key_value(k) for k in opened.key_ids()] + [opened.pckey(n) for n in ("d1", "d2")]
    secrets += [k for n in ("d1", "d2") for _, k in opened.device_keys(n, 3)]
    opened.close()
    assert len(secrets) == 3 + 3 + 2 + 2

    copy = tmp_path / "stolen" / "kms"
    shutil.copytree(store, copy)
    keyfile.rename(tmp_path / "kept-apart.dbkey")  # the thief's machine has no such file
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {"kms.sqlite3"} and any(p.suffix == ".t10kbak" for p in files)
    for p in files:
        data = p.read_bytes()
        leaked = [s.hex() for s in secrets if s in data or s.hex().encode() in data or s.hex().upper().encode() in data]
        assert leaked == [], f"{p} holds key material"
    with pytest.raises(DbKeyMissing):
        KmsStore.open(copy, dbkey=DbKeySource(environ={}, interactive=False))
    with pytest.raises(StoreError, match="not the key of this store"):
        KmsStore.open(copy, dbkey=DbKeySource(environ={DBKEY_ENV: os.urandom(32).hex()}))


def test_set_dbkey_writes_the_new_key_where_the_old_one_was(cli: Cli, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store, keyfile = tmp_path / "kms", tmp_path / "kms.dbkey"
    cli("kms", "init", "--no-roles", "--store", str(store), "--dbkey-file", str(keyfile))
    key_id = cli("kms", "create-key", "--store", str(store))[0].strip()
    new = os.urandom(32).hex()
    (tmp_path / "new.key").write_text(new)
    out = cli.json("kms", "set-dbkey", "--store", str(store), "--key-file", str(tmp_path / "new.key"))
    assert out["dbkey_file"] == str(keyfile.resolve()) and keyfile.read_text().strip() == new
    assert not (store / DBKEY_NAME).exists() and not Path(str(keyfile) + ".new").exists()
    assert key_id in cli("kms", "list", "--store", str(store))[0]

    # from the environment: no file is written, the operator gives the new key from then on
    env_store, first, second = tmp_path / "env", os.urandom(32).hex(), os.urandom(32).hex()
    monkeypatch.setenv(DBKEY_ENV, first)
    cli("kms", "init", "--no-roles", "--store", str(env_store))
    (tmp_path / "second.key").write_text(second)
    out = cli.json("kms", "set-dbkey", "--store", str(env_store), "--key-file", str(tmp_path / "second.key"))
    assert out["dbkey_file"] is None and sorted(p.name for p in env_store.iterdir() if p.name.startswith("dbkey")) == []
    monkeypatch.setenv(DBKEY_ENV, second)
    cli("kms", "list", "--store", str(env_store))


def test_a_set_dbkey_crash_is_finished_beside_a_key_file_elsewhere(tmp_path: Path) -> None:
    from kms_client import keyadmin

    keyfile = tmp_path / "vault.dbkey"
    store = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=b"\x01\x02\x03\x04", dbkey_file=keyfile)
    key_id = store.create_key()
    original_replace = os.replace

    def crash(src: object, dst: object) -> None:
        raise KeyboardInterrupt("power lost before the key file was switched")

    os.replace = crash  # type: ignore[assignment]
    try:
        with pytest.raises(KeyboardInterrupt):
            keyadmin.set_dbkey(store, new := os.urandom(32))
    finally:
        os.replace = original_replace  # type: ignore[assignment]
    store.close()
    assert Path(str(keyfile) + ".new").exists()
    assert KmsStore.open(tmp_path / "kms").key_ids() == [key_id]
    assert keyfile.read_text().strip() == new.hex() and not Path(str(keyfile) + ".new").exists()


def test_restore_and_failover_put_the_key_where_they_are_told(cli: Cli, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    store, keyfile = tmp_path / "kms", tmp_path / "kms.dbkey"
    cli("kms", "init", "--no-roles", "--store", str(store), "--dbkey-file", str(keyfile))
    (tmp_path / "backup.key").write_text(os.urandom(32).hex())
    cli("kms", "set-backupkey", "--store", str(store), "--key-file", str(tmp_path / "backup.key"))
    key_id = cli("kms", "create-key", "--store", str(store))[0].strip()
    cli("kms", "backup", "--store", str(store))
    dbkey = keyfile.read_text().strip()

    # on the same KMS: the key goes back to the file the store names
    keyfile.unlink()
    cli("kms", "restore", "latest", "--store", str(store), "--key-file", str(tmp_path / "backup.key"))
    assert keyfile.read_text().strip() == dbkey and not (store / DBKEY_NAME).exists()
    assert key_id in cli("kms", "list", "--store", str(store))[0]

    # onto another KMS, the key file where the operator says
    other, other_key = tmp_path / "other", tmp_path / "other.dbkey"
    cli("kms", "restore", "latest", "--store", str(other), "--from", str(store), "--key-file",
        str(tmp_path / "backup.key"), "--dbkey-file", str(other_key))
    assert other_key.read_text().strip() == dbkey and not (other / DBKEY_NAME).exists()
    assert key_id in cli("kms", "list", "--store", str(other))[0]

    # the standby, with the key in the environment: nothing written; a different one: refused, nothing changed
    cli("kms", "standby", "set", "--store", str(store), "--dir", str(tmp_path / "standby"))
    cli("kms", "standby", "sync", "--store", str(store))
    monkeypatch.setenv(DBKEY_ENV, os.urandom(32).hex())
    _, err = cli("kms", "failover", "--store", str(tmp_path / "standby"), "--key-file", str(tmp_path / "backup.key"),
                 rc=1)
    assert "$T10K_DBKEY is not the database key of backup" in err
    assert not (tmp_path / "standby" / "kms.sqlite3").exists()
    monkeypatch.setenv(DBKEY_ENV, dbkey)
    cli("kms", "failover", "--store", str(tmp_path / "standby"), "--key-file", str(tmp_path / "backup.key"))
    assert not (tmp_path / "standby" / DBKEY_NAME).exists()
    assert key_id in cli("kms", "list", "--store", str(tmp_path / "standby"))[0]


def _run_on_a_terminal(argv: list[str], answer: str, env: dict[str, str]) -> tuple[int, str]:
    """Run t10k with a pseudo-terminal as its controlling terminal; type ``answer`` at the prompt."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: a new session whose terminal is the pty
        os.chdir(ROOT)
        os.execve(sys.executable, [sys.executable, "-m", "lab.cli", *argv], env)
    seen, typed, deadline = b"", False, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # the child closed the terminal: it has exited
                break
            if not chunk:
                break
            seen += chunk
            if not typed and b"database key of the KMS store" in seen:
                os.write(fd, answer.encode() + b"\n")
                typed = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), seen.decode(errors="replace")


def test_on_a_terminal_the_key_is_asked_for_and_not_echoed(tmp_path: Path) -> None:
    store, key = tmp_path / "kms", os.urandom(32).hex()
    KmsStore.create(store, dbkey=bytes.fromhex(key), kms_id=b"\x01\x02\x03\x04", keep_dbkey=False).close()
    env = {k: v for k, v in os.environ.items() if k != DBKEY_ENV}
    code, seen = _run_on_a_terminal(["kms", "list", "--store", str(store)], key, env)
    assert code == 0, seen
    assert "database key of the KMS store" in seen and key not in seen  # getpass: nothing echoed
    code, seen = _run_on_a_terminal(["kms", "list", "--store", str(store)], os.urandom(32).hex(), env)
    assert code == 1 and "typed at the prompt is not the key of this store" in seen


def test_naming_a_key_file_for_the_restore_does_not_skip_the_administrators_login(
        cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "kms"
    cli("kms", "init", "--store", str(store))  # roles on: restoring over it is the Administrator's
    (tmp_path / "backup.key").write_text(os.urandom(32).hex())
    monkeypatch.delenv("T10K_SESSION", raising=False)
    _, err = cli("kms", "restore", "latest", "--store", str(store), "--key-file", str(tmp_path / "backup.key"),
                 "--dbkey-file", str(tmp_path / "nowhere.dbkey"), "--session", "", rc=1)
    assert "log in first" in err and not (tmp_path / "nowhere.dbkey").exists()
