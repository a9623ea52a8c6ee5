"""Every ``t10k`` subcommand against corrupt inputs: one line, never a traceback (issue 12).

The subcommands are enumerated from ``lab.cli.build_parser()``, not listed by hand. Each
runs as its own process with every file or directory it takes (and the default KMS store,
$T10K_KMS_STORE) replaced by a damaged copy of a real one: random bytes, cut in half, or
empty. Network targets are addresses where nothing listens. A command that reads none of
its inputs and runs on (a demo) is interrupted after a while; its output is checked too.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.cli import build_parser, main

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
NOBODY = "127.0.9.1"  # nothing listens there
RUN_LIMIT_S = 6.0


def leaf_commands() -> list[tuple[list[str], argparse.ArgumentParser]]:
    out = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append((prefix, parser))
            return
        for name, sub in subs[0].choices.items():
            walk(sub, prefix + [name])

    walk(build_parser(), [])
    return out


# --- a real world, made once, then damaged -------------------------------------


@dataclass
class World:
    files: dict[str, Path]  # kind -> a real file or directory


def make_world(root: Path) -> World:
    from kms_client.builders import prepare_ekt
    from kms_client.exchange import export_keys
    from kms_client.keyadmin import set_backupkey
    from kms_client.station import write_image
    from kms_client.store import KmsStore
    from protocol.manufacturing import format_manufacturing, make_drives

    root.mkdir()
    drives = make_drives(2)
    (root / "cd.json").write_text(format_manufacturing(drives))
    store = KmsStore.create(root / "kms", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x05")
    backup_key = os.urandom(32)
    (root / "backup.key").write_text(backup_key.hex() + "\n")
    set_backupkey(store, backup_key)
    for name, d in zip(("d0", "d1"), drives, strict=True):
        store.add_drive(name, d.csn, d.pckey, d.model, ip=NOBODY)
    (root / "tok.secret").write_text(store.add_token("tok", NOBODY, 7020).hex() + "\n")
    write_image(store, "tok", prepare_ekt(store, ["d0", "d1"], use_pckey=True), root / "ekt.img")
    key = store.create_key("k")
    export_keys(store, [key], root / "keys.xml")
    # A live WAL: copy the database while a connection still holds uncheckpointed pages.
    conn = sqlite3.connect(root / "kms" / "kms.sqlite3")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    store.create_key("after the last checkpoint")
    shutil.copytree(root / "kms", root / "kms-wal")
    conn.close()
    store.close()
    assert main(["token", "load-image", str(root / "ekt.img"), "--state", str(root / "token"),
                 "--secret-file", str(root / "tok.secret")]) == 0
    assert main(["token", "save-image", str(root / "status.img"), "--state", str(root / "token"),
                 "--secret-file", str(root / "tok.secret")]) == 0
    (root / "drive").mkdir()
    (root / "drive" / f"drive-{drives[0].csn.hex()}.json").write_text('{"format": 1, "device_keys": []}')
    (root / "library").mkdir()
    (root / "library" / "VOL001.json").write_text('{"volser": "VOL001", "blocks": []}')
    files = {
        "store": root / "kms", "store-db": root / "kms", "store-wal": root / "kms-wal", "manufacturing": root / "cd.json",
        "secret": root / "tok.secret", "key-file": root / "backup.key", "image": root / "ekt.img",
        "status-image": root / "status.img", "export": root / "keys.xml", "token-state": root / "token",
        "drive-state": root / "drive", "library": root / "library", "pcap": ROOT / "captures" / "demo.pcap",
        "plan": ROOT / "lab" / "topologies" / "company-xyz-plan.toml",
        "topology": ROOT / "lab" / "topologies" / "company-xyz.toml",
    }
    return World(files)


DAMAGE = {
    "random": lambda data, rnd: rnd.randbytes(max(64, len(data) // 4)),
    "halved": lambda data, rnd: data[: len(data) // 2],
    "empty": lambda data, rnd: b"",
}


def damaged(world: World, how: str, into: Path) -> dict[str, Path]:
    """A copy of every file of the world, each file in it damaged ``how``. Three stores: "store"
    (database and key file damaged), "store-db" (only the database) and "store-wal" (only the
    write-ahead log of a store in use)."""
    rnd = random.Random(how)
    out = {}
    for kind, src in world.files.items():
        dst = into / kind / src.name
        if src.is_dir():
            shutil.copytree(src, dst)
            targets = [p for p in dst.rglob("*") if p.is_file() and p.suffix != ".lock"]
            if kind == "store-wal":
                targets = [p for p in targets if p.name.endswith("-wal")]
            elif kind == "store-db":
                targets = [p for p in targets if p.name == "kms.sqlite3"]
            elif kind == "store":
                targets = [p for p in targets if p.name in ("kms.sqlite3", "dbkey")]
        else:
            dst.parent.mkdir(parents=True)
            shutil.copy(src, dst)
            targets = [dst]
        for t in targets:
            t.write_bytes(DAMAGE[how](t.read_bytes(), rnd))
        out[kind] = dst
    return out


# --- filling in each command's arguments ----------------------------------------

_BY_DEST = {"store": "store", "dir": "store", "primary": "store", "source": "store", "manufacturing": "manufacturing",
            "secret_file": "secret", "key_file": "key-file", "topology": "topology", "library": "library",
            "keep": "store", "files": "export", "sources": "export"}
_FILE_BY_COMMAND = {"import-keys": "export", "plan": "plan", "decode": "pcap", "replay": "pcap"}
_VALUES = {"ip": NOBODY, "ip_option": NOBODY, "first_ip": NOBODY, "count": "1", "key": "0000000500000001",
           "write_key": "0000000500000001", "csn": "5700000000000001", "kms_id": "0a0b0c0d",
           "mqtt": f"mqtt://{NOBODY}:1", "volser": "VOL001", "volsers": "VOL001", "dump_id": "latest",
           "operator": "admin", "to": NOBODY}


def path_for(command: list[str], action: argparse.Action, files: dict[str, Path]) -> Path | None:
    dest = action.dest
    if dest == "state":
        return {"token": files["token-state"], "drive": files["drive-state"]}.get(command[0], files["store"])
    if dest == "image":
        return files["status-image"] if command[-1] in ("token-status", "save-image") else files["image"]
    if dest == "file":
        return files[_FILE_BY_COMMAND[command[-1]]]
    if dest in _BY_DEST:
        return files[_BY_DEST[dest]]
    if dest in ("out", "secret_out", "text", "capture"):
        return files["export"]  # an output onto a file that exists: refused, or replaced when it holds no keys
    return None


def argv_for(command: list[str], parser: argparse.ArgumentParser, files: dict[str, Path]) -> list[str]:
    argv = list(command)
    for action in parser._actions:
        if action.dest in ("help", "json", "verbose") or isinstance(action, argparse._SubParsersAction):
            continue
        path = path_for(command, action, files) if action.type is Path or action.dest in ("store",) else None
        if path is None and not (action.required or not action.option_strings):
            continue
        value = str(path) if path is not None else _VALUES.get(action.dest) or (
            action.choices[0] if action.choices else "x")
        if action.choices and value not in action.choices:
            value = list(action.choices)[0]
        argv += ([action.option_strings[0]] if action.option_strings else []) + [str(value)]
    return argv


@dataclass
class Ran:
    argv: list[str]
    code: int | None  # None: still running after RUN_LIMIT_S, then interrupted
    out: str
    err: str

    def show(self) -> str:
        return f"t10k {' '.join(self.argv)} -> {self.code}\n{self.err}{self.out[-2000:]}"


# Python starts slowly on a busy machine: one process imports the CLI once and forks a
# child per command, each with its own stdin, stdout, stderr, working directory and store.
FORK_RUNNER = r"""
import json, os, signal, sys, time
from lab.cli import main

jobs = json.loads(sys.stdin.read())
limit, workers = float(sys.argv[1]), int(sys.argv[2])
running, results = {}, {}

def start(i, job):
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(job["cwd"])
            os.environ["T10K_KMS_STORE"] = job["store"]
            os.environ.pop("T10K_SESSION", None)
            for fd, name, mode in ((0, "in", os.O_RDONLY), (1, "out", os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                   (2, "err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                os.dup2(os.open(job["prefix"] + name, mode, 0o600), fd)
            sys.stdin = open(0, closefd=False)
            code = main(job["argv"])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            import traceback
            traceback.print_exc()
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    running[pid] = (i, time.monotonic(), False)

queue = list(enumerate(jobs))
while queue or running:
    while queue and len(running) < workers:
        start(*queue.pop(0))
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid:
        i, _, interrupted = running.pop(pid)
        results[i] = None if interrupted else os.waitstatus_to_exitcode(status)
        continue
    now = time.monotonic()
    for pid, (i, began, interrupted) in list(running.items()):
        if not interrupted and now - began > limit:
            os.kill(pid, signal.SIGINT)
            running[pid] = (i, now, True)
        elif interrupted and now - began > 10:
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.02)
print(json.dumps([results[i] for i in range(len(jobs))]))
"""


def run_all(jobs: list[tuple[list[str], Path]], cwd: Path) -> list[Ran]:
    """Each (argv, default store) in its own forked process."""
    import json

    specs = []
    for n, (argv, store) in enumerate(jobs):
        prefix = str(cwd / f"job{n}-{len(list(cwd.glob('*.in')))}.")
        Path(prefix + "in").write_text("not a password\n")
        specs.append({"argv": argv, "store": str(store), "cwd": str(cwd), "prefix": prefix})
    done = subprocess.run([sys.executable, "-c", FORK_RUNNER, str(RUN_LIMIT_S), "3"], input=json.dumps(specs),
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.splitlines()[-1])
    return [Ran(s["argv"], code, Path(s["prefix"] + "out").read_text(errors="replace"),
                Path(s["prefix"] + "err").read_text(errors="replace")) for s, code in zip(specs, codes, strict=True)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world") / "real")


def test_every_command_is_enumerated() -> None:
    names = {" ".join(c) for c, _ in leaf_commands()}
    assert {"kms list", "kms show", "kms reconcile", "drive manufacture", "token save-image", "pcap decode"} <= names
    assert len(names) >= 60


def names_another_input(r: Ran) -> bool:
    """A command may check another of its inputs before its store (a manufacturing file, an image)."""
    return any(a in r.err for a in r.argv[4:] if "/" in a)


def is_store_user(argv: list[str]) -> bool:
    """The KMS commands that open their store before anything else."""
    return argv[0] == "kms" and argv[1] not in ("init", "plan", "watch", "restore", "failover")


@pytest.mark.parametrize("how", list(DAMAGE))
def test_no_command_shows_a_traceback_on_damaged_inputs(world: World, how: str, tmp_path: Path) -> None:
    files = damaged(world, how, tmp_path)
    jobs = [(argv_for(c, p, files), files["store"]) for c, p in leaf_commands()]
    for store in ("store-db", "store-wal"):
        jobs += [(argv_for(c, p, files | {"store": files[store]}), files[store]) for c, p in leaf_commands()
                 if is_store_user(c)]
    results = run_all(jobs, tmp_path)
    traced = [r for r in results if "Traceback" in r.err + r.out]
    assert not traced, "\n\n".join(r.show() for r in traced)
    # The KMS commands that open a damaged store: exit 1, one line naming the file and the way out.
    # (SQLite reads a WAL cut short, or empty, as a store that crashed mid-write: it opens.)
    damaged_store = [r for r in results if is_store_user(r.argv) and ("store-wal" not in r.argv[3] or how == "random")]
    assert len(damaged_store) >= 2 * 30
    wrong = [r for r in damaged_store if r.code != 1 or r.err.count("\n") != 1 or not (
        any(f in r.err for f in ("kms.sqlite3 ", "dbkey ", "kms.sqlite3-wal ")) and "t10k kms restore latest" in r.err
        or names_another_input(r))]
    assert not wrong, "\n\n".join(r.show() for r in wrong)
    # Every other command that failed said why in one line.
    others = [r for r in results if r.code not in (0, None) and r not in damaged_store]
    long = [r for r in others if r.err.count("\n") != 1]
    assert not long, "\n\n".join(r.show() for r in long)


def test_a_damaged_store_is_restored_as_the_error_says(world: World, tmp_path: Path) -> None:
    files = damaged(world, "halved", tmp_path)
    store = files["store"]
    (ran,) = run_all([(["kms", "list", "--store", str(store)], store)], tmp_path)
    assert ran.code == 1 and "t10k kms restore latest" in ran.err
    command = ran.err.split(": ")[-1].strip().replace("BACKUP_KEY_FILE", str(world.files["key-file"])).split()
    (restored,) = run_all([(command[1:], store)], tmp_path)
    assert restored.code == 0, restored.show()
    (listed,) = run_all([(["kms", "list", "--store", str(store), "--json"], store)], tmp_path)
    assert listed.code == 0 and '"d0"' in listed.out
