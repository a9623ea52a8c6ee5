"""The daemons as separate processes, driven only through the ``t10k`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from lab.addresses import free_net

pytestmark = pytest.mark.network

T10K = [sys.executable, "-m", "lab.cli"]
ROOT = Path(__file__).resolve().parents[2]
#: A free 127.x.y.0/24 (every daemon port of every host, the dead ones the tests use too) and drive-LAN port,
#: so these run beside another lab (or the README's daemons).
NET = free_net()
TOKEN_IP = NET.token_ip(0)
FIRST_DRIVE_IP = NET.drive_ip(0)


def addr(host: int) -> str:
    return NET.host(host)


def t10k(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*T10K, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"t10k {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return result


class Daemon:
    def __init__(self, *args: str) -> None:
        if args[:2] in (("token", "run"), ("drive", "run"), ("drive", "run-many")):
            args = (*args, "--drive-lan-port", str(NET.lan_port))
        self.proc = subprocess.Popen([*T10K, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if "serving" not in line:
            self.stop()
            raise AssertionError(f"t10k {' '.join(args)} did not start: {line} {self.proc.stderr.read()}")  # type: ignore[union-attr]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


def vop(ip: str) -> dict[str, object]:
    return json.loads(t10k("vop", "status", "--ip", ip, "--json").stdout)  # type: ignore[no-any-return]


def wait_for(ips: list[str], predicate: object, what: str, timeout: float = 15) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while True:
        statuses = [vop(ip) for ip in ips]
        if all(predicate(s) for s in statuses):  # type: ignore[operator]
            return statuses
        if time.monotonic() > deadline:
            raise AssertionError(f"not every drive became {what}: {statuses}")
        time.sleep(0.1)


@dataclass
class CliSite:
    store: list[str]
    drive_args: tuple[str, ...]
    ips: list[str]
    mapping: dict[str, object]
    key: str


def armed_by_cli(tmp_path: Path, daemons: list[Daemon], sockets: str = "auto") -> CliSite:
    """Three drives enrolled (EKT) and armed (OKT) with nothing but the t10k command
    (``sockets``: the drive host's --sockets)."""
    store = ["--store", str(tmp_path / "kms")]
    made = tmp_path / "cd.json"
    t10k("drive", "manufacture", "--count", "3", "--out", str(made), "--first-csn", "5700000000000a01")
    t10k("kms", "init", *store, "--kms-id", "0a0b0c0d", "--no-roles")
    csns = [d["csn"] for d in json.loads(made.read_text())]
    for i, csn in enumerate(csns):
        t10k("kms", "import-drive", *store, "--manufacturing", str(made), "--csn", csn, "--name", f"drive-{i}",
             "--ip", addr(101 + i))
    t10k("kms", "add-token", *store, "--name", "tok", "--ip", TOKEN_IP, "--secret-out", str(tmp_path / "tok.secret"))
    daemons.append(Daemon("token", "run", "--ip", TOKEN_IP, "--state", str(tmp_path / "tok"),
                          "--secret-file", str(tmp_path / "tok.secret"), "--announce-interval", "0.3"))
    drive_args = ("drive", "run-many", "--manufacturing", str(made), "--first-ip", FIRST_DRIVE_IP,
                  "--state", str(tmp_path / "drives"), "--library", str(tmp_path / "library"), "--sockets", sockets)
    daemons.append(Daemon(*drive_args))
    ips = [addr(101 + i) for i in range(3)]
    names = [a for i in range(3) for a in ("--drive", f"drive-{i}")]

    out = json.loads(t10k("kms", "write-ekt", *store, "--token", "tok", *names, "--use-pckey", "--json").stdout)
    assert out["status"] == "OK"
    wait_for(ips, lambda s: s["led"] == "AMBER" and s["status2"] == "Need OKT", "amber")

    key = json.loads(t10k("kms", "create-key", *store, "--json").stdout)["key_id"]
    t10k("kms", "create-key-set", *store, "KS1")
    t10k("kms", "add-key", *store, "--key-set", "KS1", "--key", key)
    t10k("kms", "create-pool", *store, "P1")
    t10k("kms", "add-drive", *store, "--pool", "P1", *names)
    mapping = json.loads(t10k("kms", "map", *store, "--pool", "P1", "--key-set", "KS1", "--write-key", key,
                              "--json").stdout)
    t10k("kms", "write-okt", *store, "--token", "tok", "--pool", "P1")
    armed = wait_for(ips, lambda s: s["led"] == "RED", "red")
    assert {s["okt_timestamp"] for s in armed} == {mapping["timestamp"]}
    assert {s["write_key_id"] for s in armed} == {key}
    return CliSite(store, drive_args, ips, mapping, key)


def test_enrol_arm_and_power_cycle_through_the_cli(tmp_path: Path, daemons: list[Daemon]) -> None:
    site = armed_by_cli(tmp_path, daemons)
    # Power cycle: the drive process is stopped and started again from its state directory.
    assert daemons.pop().stop() == 0
    daemons.append(Daemon(*site.drive_args))
    wait_for(site.ips, lambda s: s["led"] == "RED" and s["okt_timestamp"] == site.mapping["timestamp"], "re-armed")
    status = json.loads(t10k("kms", "token-status", *site.store, "--token", "tok", "--json").stdout)
    assert (status["mode"], status["led3"], status["acknowledged"], status["errors"]) == ("OKT", "SOLID_GREEN", 3, [])
    # the operator surfaces of the seed: a drive's VOP by IP, a token by IP, a whole pool at once
    assert json.loads(t10k("vop", "status", site.ips[0], "--json").stdout)["led"] == "RED"
    token = json.loads(t10k("token", "status", TOKEN_IP, "--secret-file", str(tmp_path / "tok.secret"),
                            "--json").stdout)
    assert (token["mode"], token["led3"], token["errors"]) == ("OKT", "SOLID_GREEN", [])
    verified = t10k("kms", "verify-pool", *site.store, "--pool", "P1")
    assert "3 of 3 drive(s) hold it" in verified.stdout
    t10k("kms", "apply", *site.store, "--pool", "P1")
    stale = t10k("kms", "verify-pool", *site.store, "--pool", "P1", check=False)
    assert stale.returncode == 1 and "0 of 3" in stale.stdout


def test_sighup_power_cycles_a_drive_host(tmp_path: Path, daemons: list[Daemon]) -> None:
    made = tmp_path / "cd.json"
    t10k("drive", "manufacture", "--count", "1", "--out", str(made))
    d = Daemon("drive", "run", "--ip", addr(150), "--manufacturing", str(made), "--state", str(tmp_path / "s"))
    daemons.append(d)
    assert vop(addr(150))["led"] == "GREEN"
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(0.2)
    assert d.proc.poll() is None and vop(addr(150))["led"] == "GREEN"


def test_demo_exits_zero_with_json(tmp_path: Path) -> None:
    result = t10k("lab", "demo", "--json", "--keep", str(tmp_path / "demo"))
    report = json.loads(result.stdout)
    assert report["ok"] is True and len(report["steps"]) == 5
    step4 = report["steps"][3]
    assert {d["status2"] for d in step4["drives"]} == {"Need OKT"} and len(step4["drives"]) == 8
    assert {d["led"] for d in report["steps"][4]["drives"]} == {"RED"}


@pytest.mark.parametrize(("args", "code", "message"), [
    (["kms", "list", "--store", "/nonexistent/kms"], 1, "t10k kms init"),
    (["kms", "import-drive", "--manufacturing", "x", "--csn", "12", "--name", "n"], 2, "16 hex digits"),
    (["kms", "init", "--dbkey", "abc"], 2, "64 hexadecimal"),
    (["vop", "status", "--ip", addr(254)], 1, "cannot connect"),
    (["drive", "run", "--ip", addr(1), "--manufacturing", "/nonexistent.json", "--state", "/tmp/x"], 1,
     "does not exist"),
    (["drive", "manufacture", "--count", "0", "--out", "/tmp/x.json"], 1, "at least 1"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_bad_input_gets_a_clear_error(args: list[str], code: int, message: str) -> None:
    result = t10k(*args, check=False)
    assert result.returncode == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_token_with_a_bad_secret_file_does_not_start(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("not hex")
    result = t10k("token", "run", "--ip", addr(30), "--state", str(tmp_path / "t"), "--secret-file",
                  str(tmp_path / "s"), check=False)
    assert result.returncode == 1 and "64 hex digits" in result.stderr


def test_an_address_in_use_is_reported(tmp_path: Path, daemons: list[Daemon]) -> None:
    made = tmp_path / "cd.json"
    t10k("drive", "manufacture", "--count", "1", "--out", str(made))
    daemons.append(Daemon("drive", "run", "--ip", addr(160), "--manufacturing", str(made), "--state", str(tmp_path / "a")))
    result = t10k("drive", "run", "--ip", addr(160), "--manufacturing", str(made), "--state", str(tmp_path / "b"),
                  check=False, timeout=20)
    assert result.returncode == 1 and "address already in use" in result.stderr.lower()
    held = f"{addr(160)}:7012"  # the drive's LAN socket, held by the first drive process
    assert held in result.stderr and f"process {daemons[0].proc.pid} (" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert os.path.exists(made)


def test_the_readme_walkthrough_runs(tmp_path: Path) -> None:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    result = subprocess.run(["bash", str(ROOT / "docs" / "walkthrough.sh"), str(tmp_path / "wt")], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert '"led": "RED"' in result.stdout and "3 acknowledged" in result.stdout
    assert "OKT written to tok" in result.stdout and "intact" in result.stdout
    assert "WARNING" not in result.stderr


def test_a_daemon_captures_what_it_sends_and_receives(tmp_path: Path, daemons: list[Daemon]) -> None:
    made = tmp_path / "cd.json"
    t10k("drive", "manufacture", "--count", "1", "--out", str(made))
    d = Daemon("drive", "run", "--ip", addr(170), "--manufacturing", str(made), "--state", str(tmp_path / "s"),
               "--capture", str(tmp_path / "drive.pcap"))
    daemons.append(d)
    vop(addr(170))
    vop(addr(170))
    assert d.stop() == 0
    decoded = json.loads(t10k("pcap", "decode", str(tmp_path / "drive.pcap"), "--json").stdout)
    assert [r["message"] for r in decoded] == ["VOP_STATUS_REQUEST", "VOP_STATUS"] * 2
    assert decoded[1]["src"] == f"{addr(170)}:7030"


def test_lab_up_brings_the_seed_topology_up_as_processes(tmp_path: Path) -> None:
    result = t10k("lab", "up", "lab/topologies/company-xyz.toml", "--state", str(tmp_path / "xyz"),
                  "--mode", "loopback", "--once", "--json", timeout=120)
    report = json.loads(result.stdout)
    assert report["mode"] == "loopback" and len(report["drives"]) == 16
    assert {d["led"] for d in report["drives"]} == {"RED"}
    keys = {d["site"]: (d["write_key"], d["keys"]) for d in report["drives"]}
    assert keys["new-york"] == ("K3", 4) and keys["london"] == ("K5", 6) and keys["tokyo"] == ("K1", 1)
    assert report["kms_store"] == str(tmp_path / "xyz" / "kms") and Path(report["secrets"]["tokyo-a"]).is_file()
    assert "site tokyo: enrolling" in result.stderr and "site london: armed" in result.stderr  # progress
    listed = t10k("kms", "list", "--store", report["kms_store"]).stdout
    assert "tokyo-d1" in listed
    again = t10k("lab", "up", "lab/topologies/company-xyz.toml", "--state", str(tmp_path / "xyz"), "--once",
                 "--mode", "loopback", check=False)
    assert again.returncode == 1 and "not empty" in again.stderr


def test_key_administration_and_the_audit_trail_through_the_cli(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "kms")]
    t10k("kms", "init", *store, "--no-roles")
    t10k("kms", "create-key", *store, "--description", "year 1")
    (tmp_path / "new.key").write_text(os.urandom(32).hex())
    out = json.loads(t10k("kms", "set-dbkey", *store, "--key-file", str(tmp_path / "new.key"), "--json").stdout)
    assert out["resealed"] == 4  # the key, the key check, the audit key, the KMS signing key
    (tmp_path / "short.key").write_text("abcd")
    bad = t10k("kms", "set-backupkey", *store, "--key-file", str(tmp_path / "short.key"), check=False)
    assert bad.returncode == 1 and "the backup key from " in bad.stderr and "short.key: must be 64 hexadecimal characters" in bad.stderr
    (tmp_path / "backup.key").write_text(os.urandom(32).hex())
    t10k("kms", "set-backupkey", *store, "--key-file", str(tmp_path / "backup.key"))
    assert t10k("kms", "view-backupkey", *store).stdout.strip() == (tmp_path / "backup.key").read_text()
    records = json.loads(t10k("kms", "audit", "list", *store, "--json").stdout)["records"]
    assert [r["action"] for r in records] == ["init", "create_key", "set_dbkey", "set_backupkey", "view_backupkey"]
    assert records[1]["detail"]["description"] == "year 1"
    assert "intact" in t10k("kms", "audit", "verify", *store).stdout


def test_backup_and_restore_through_the_cli(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "kms")]
    t10k("kms", "init", *store, "--kms-id", "0a0b0c0d", "--no-roles")
    (tmp_path / "backup.key").write_text(os.urandom(32).hex())
    t10k("kms", "set-backupkey", *store, "--key-file", str(tmp_path / "backup.key"))
    key = t10k("kms", "create-key", *store).stdout.strip()
    dump = json.loads(t10k("kms", "backup", *store, "--json").stdout)["dump_id"]
    t10k("kms", "create-key", *store)
    listed = json.loads(t10k("kms", "restore", "list", *store, "--json").stdout)["backups"]
    assert [b["dump_id"] for b in listed] == [dump] and listed[0]["kms_id"] == "0a0b0c0d"
    missing = t10k("kms", "restore", dump, *store, check=False)
    assert missing.returncode == 1 and "--key-file" in missing.stderr
    (tmp_path / "wrong.key").write_text(os.urandom(32).hex())
    wrong = t10k("kms", "restore", dump, *store, "--key-file", str(tmp_path / "wrong.key"), check=False)
    assert wrong.returncode == 1 and "wrong backup key" in wrong.stderr
    t10k("kms", "restore", "latest", *store, "--key-file", str(tmp_path / "backup.key"))
    keys = [k["key_id"] for k in json.loads(t10k("kms", "list", *store, "--json").stdout)["keys"]]
    assert keys == [key]  # the key created after the backup is gone with the restore
    other = ["--store", str(tmp_path / "other")]
    t10k("kms", "restore", "latest", *other, "--from", str(tmp_path / "kms"),
         "--key", (tmp_path / "backup.key").read_text().strip())
    assert json.loads(t10k("kms", "list", *other, "--json").stdout)["kms_id"] == "0a0b0c0d"


def test_changing_write_keys_by_the_seeds_methods_1_2_and_3(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "kms")]
    t10k("kms", "init", *store, "--no-roles")

    def key(key_set: str) -> str:
        return t10k("kms", "create-key", *store, "--key-set", key_set).stdout.strip()

    def mapping(*key_sets: str, write: str) -> dict[str, object]:
        sets = [a for ks in key_sets for a in ("--key-set", ks)]
        return json.loads(t10k("kms", "map", *store, "--pool", "P", *sets, "--write-key", write, "--json").stdout)

    t10k("kms", "create-pool", *store, "P")
    t10k("kms", "create-key-set", *store, "KS1")
    k1 = key("KS1")
    first = mapping("KS1", write=k1)
    # Method 1: a new key set with a new key, added to the mapping as the write key.
    t10k("kms", "create-key-set", *store, "KS2")
    k2 = key("KS2")
    m1 = mapping("KS1", "KS2", write=k2)
    assert m1["write_key_id"] == k2 and set(m1["key_ids"]) == {k1, k2} and m1["timestamp"] > first["timestamp"]
    # Method 2: a new write key chosen among the mapping's read keys.
    m2 = mapping("KS1", "KS2", write=k1)
    assert m2["write_key_id"] == k1 and m2["timestamp"] > m1["timestamp"]
    # Method 3: an active key set cannot be modified ...
    refused = t10k("kms", "create-key", *store, "--key-set", "KS2", check=False)
    assert refused.returncode == 1 and "limitation 9" in refused.stderr and "Method 1" in refused.stderr
    # ... so unmap it (a placeholder keeps at least one key mapped), add the key, map it back.
    t10k("kms", "create-key-set", *store, "PLACEHOLDER")
    placeholder = key("PLACEHOLDER")
    mapping("PLACEHOLDER", write=placeholder)
    k3 = key("KS2")
    m3 = mapping("KS1", "KS2", write=k3)
    assert m3["write_key_id"] == k3 and set(m3["key_ids"]) == {k1, k2, k3}
    # A mapping never goes empty, and its write key is one of its keys.
    empty = t10k("kms", "map", *store, "--pool", "P", "--key-set", "KS2", "--write-key", placeholder, check=False)
    assert empty.returncode == 1 and "write key" in empty.stderr


def test_a_day_with_operators_and_roles_through_the_cli(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "kms")]

    def run(*args: str, session: str | None = None, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        extra = ["--session", session] if session else []
        result = subprocess.run([*T10K, *args, *store, *extra], cwd=ROOT, capture_output=True, text=True,
                                timeout=60, input=stdin)
        if check and result.returncode != 0:
            raise AssertionError(f"t10k {' '.join(args)}: {result.stderr}")
        return result

    def login(name: str, password: str) -> str:
        return json.loads(run("kms", "login", "--operator", name, "--json", stdin=password + "\n").stdout)["session"]

    assert "password kmsadm" in run("kms", "init").stdout
    assert "log in first" in run("kms", "list", check=False).stderr
    admin = login("KmsAdm", "kmsadm")
    assert "change the default password" in run("kms", "create-key", session=admin, check=False).stderr
    run("kms", "passwd", session=admin, stdin="admin passphrase\n")
    run("kms", "create-operator", "alice", "--role", "Security Officer", session=admin, stdin="alice passphrase\n")
    alice = login("alice", "alice passphrase")
    run("kms", "create-operator", "bob", "--role", "User", session=alice, stdin="bob passphrase\n")
    bob = login("bob", "bob passphrase")
    # the Administrator makes keys and key sets; the User maps them; neither does the other's work
    run("kms", "create-key-set", "KS1", session=admin)
    key = run("kms", "create-key", "--key-set", "KS1", session=admin).stdout.strip()
    refused = run("kms", "create-key", session=bob, check=False)
    assert refused.returncode == 1 and "bob (User) may not create-key: that is for Administrator" in refused.stderr
    run("kms", "create-pool", "P", session=bob)
    run("kms", "map", "--pool", "P", "--key-set", "KS1", "--write-key", key, session=bob)
    assert "may not map" in run("kms", "map", "--pool", "P", "--key-set", "KS1", "--write-key", key,
                                session=admin, check=False).stderr
    # two people deactivate a key
    assert "must ask for it too" in run("kms", "deactivate-key", key, session=bob).stdout
    assert "deactivated" in run("kms", "deactivate-key", key, session=admin).stdout
    remap = run("kms", "map", "--pool", "P", "--key-set", "KS1", "--write-key", key, session=bob, check=False)
    assert remap.returncode == 1 and "are deactivated" in remap.stderr
    records = json.loads(run("kms", "audit", "list", "--json", session=alice).stdout)["records"]
    by = {(r["operator"], r["action"]) for r in records}
    assert {("KmsAdm", "create_key"), ("bob", "set_mapping"), ("bob", "deactivate_key_requested"),
            ("KmsAdm", "deactivate_key"), ("alice", "create_operator")} <= by
    run("kms", "logout", session=bob)
    assert "ended" in run("kms", "list", session=bob, check=False).stderr


def test_air_gap_token_images_carried_to_the_bay_and_back(tmp_path: Path, daemons: list[Daemon]) -> None:
    store = ["--store", str(tmp_path / "kms")]
    made = tmp_path / "cd.json"
    t10k("drive", "manufacture", "--count", "2", "--out", str(made), "--first-csn", "5700000000000b01")
    t10k("kms", "init", *store, "--no-roles")
    for i, csn in enumerate(d["csn"] for d in json.loads(made.read_text())):
        t10k("kms", "import-drive", *store, "--manufacturing", str(made), "--csn", csn, "--name", f"d{i}")
    t10k("kms", "add-token", *store, "--name", "tok", "--ip", addr(40), "--secret-out", str(tmp_path / "s"))
    token = ["--state", str(tmp_path / "tok"), "--secret-file", str(tmp_path / "s")]
    # At the KMS bay: the EKT goes to an image, and into the token, with no network in between.
    t10k("kms", "write-ekt", *store, "--token", "tok", "--drive", "d0", "--drive", "d1", "--use-pckey",
         "--image", str(tmp_path / "ekt.img"))
    assert "EKT written" in t10k("token", "load-image", str(tmp_path / "ekt.img"), *token).stdout
    replayed = t10k("token", "load-image", str(tmp_path / "ekt.img"), *token, check=False)
    assert replayed.returncode == 1 and "REPLAYED" in replayed.stderr
    # Carried to the drive bay: the token daemon starts and the drives enrol.
    bay = Daemon("token", "run", "--ip", addr(40), *token, "--announce-interval", "0.3")
    daemons.append(bay)
    daemons.append(Daemon("drive", "run-many", "--manufacturing", str(made), "--first-ip", addr(141),
                          "--state", str(tmp_path / "drives")))
    ips = [addr(141), addr(142)]
    wait_for(ips, lambda s: s["led"] == "AMBER", "enrolled")
    in_bay = t10k("token", "load-image", str(tmp_path / "ekt.img"), *token, check=False)
    assert in_bay.returncode == 1 and "in a bay" in in_bay.stderr
    # Back to the KMS bay for the OKT, then to the drive bay again.
    assert bay.stop() == 0
    key = t10k("kms", "create-key", *store).stdout.strip()
    t10k("kms", "create-key-set", *store, "KS")
    t10k("kms", "add-key", *store, "--key-set", "KS", "--key", key)
    t10k("kms", "create-pool", *store, "P")
    t10k("kms", "add-drive", *store, "--pool", "P", "--drive", "d0", "--drive", "d1")
    t10k("kms", "map", *store, "--pool", "P", "--key-set", "KS", "--write-key", key)
    t10k("kms", "write-okt", *store, "--token", "tok", "--pool", "P", "--image", str(tmp_path / "okt.img"))
    t10k("token", "load-image", str(tmp_path / "okt.img"), *token)
    daemons.append(Daemon("token", "run", "--ip", addr(40), *token, "--announce-interval", "0.3"))
    wait_for(ips, lambda s: s["led"] == "RED", "armed")
    # And the token's status carried back to the KMS.
    daemons.pop(-1).stop()
    t10k("token", "save-image", str(tmp_path / "status.img"), *token)
    status = json.loads(t10k("kms", "token-status", *store, "--token", "tok", "--image", str(tmp_path / "status.img"),
                             "--json").stdout)
    assert (status["mode"], status["acknowledged"], status["errors"]) == ("OKT", 2, [])
    forged = tmp_path / "forged.img"
    forged.write_bytes(bytes(b ^ 1 if i == 30 else b for i, b in enumerate((tmp_path / "status.img").read_bytes())))
    bad = t10k("kms", "token-status", *store, "--token", "tok", "--image", str(forged), check=False)
    assert bad.returncode == 1 and "not a status image" in bad.stderr


def test_a_trainer_runs_a_scenario_with_its_capture(tmp_path: Path) -> None:
    result = t10k("lab", "scenario", "scenario-4", "--capture", str(tmp_path / "s4.pcap"))
    assert "every symptom checked" in result.stdout
    rows = json.loads(t10k("pcap", "decode", str(tmp_path / "s4.pcap"), "--json", "--type", "ERROR_REPORT").stdout)
    assert rows and rows[0]["fields"]["error_code"].startswith("0000610A")
    bad = t10k("lab", "scenario", "scenario-9", check=False)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
