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

from lab.addresses import free_net
from lab.cli import build_parser, main

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
#: Free addresses (beside any lab): the store's token and drives, where nothing listens, and one per job
NOBODY, JOB_NET = free_net().host(1), free_net()
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
    from drive_daemon.nvram import Nvram, encode_nvram
    from drive_daemon.nvram_store import STORE_NAME, NvramStore
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
    nvram = NvramStore(root / "drive" / STORE_NAME)
    nvram.import_rows({d.csn: encode_nvram(d.csn, d.pckey, Nvram()) for d in drives})
    nvram.close()
    assert main(["tape", "new", "--library", str(root / "library"), "VOL001"]) == 0
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
            "files": "export", "sources": "export"}
#: Given even where optional: an address left out is a default another lab may hold (pcap replay: the captured ones).
_ALWAYS = {"csn", "ip", "ip_option", "first_ip", "to", "drive_lan_port"}
_FILE_BY_COMMAND = {"import-keys": "export", "plan": "plan", "decode": "pcap", "replay": "pcap"}
_OUTPUTS = {"out", "secret_out", "text", "capture", "keep"}
_VALUES = {"count": "1", "key": "0000000500000001",
           "write_key": "0000000500000001", "csn": "5700000000000001", "kms_id": "0a0b0c0d",
           "volser": "VOL001", "volsers": "VOL001", "dump_id": "latest",
           "operator": "admin"}
OUTPUT = "output"


def nobody(n: int) -> str:
    """Job n's network address, where nothing listens unless that job starts it."""
    return JOB_NET.host(1 + n % 254)


def input_kind(command: list[str], action: argparse.Action) -> str | None:
    """Which file of the world an argument takes (OUTPUT: a new file it writes), if any."""
    dest = action.dest
    if action.type is not Path and dest != "store":
        return None
    if dest == "state":
        return {"token": "token-state", "drive": "drive-state"}.get(command[0], OUTPUT)
    if dest == "image":
        if command[-1] in ("write-ekt", "write-okt", "save-image"):
            return OUTPUT
        return "status-image" if command[-1] == "token-status" else "image"
    if dest == "file":
        return _FILE_BY_COMMAND[command[-1]]
    if dest in _OUTPUTS:
        return OUTPUT
    return _BY_DEST.get(dest)


@dataclass
class Job:
    argv: list[str]
    store: Path  # $T10K_KMS_STORE
    damaged: Path | None  # the one damaged input
    kind: str | None


def jobs_for(intact: dict[str, Path], broken: dict[str, Path], work: Path) -> list[Job]:
    """Per command: one job per input it takes, that input damaged and every other intact
    (the store three ways: database and key file, database only, WAL only)."""
    jobs = []
    for command, parser in leaf_commands():
        kinds = []
        for action in parser._actions:
            kind = input_kind(command, action)
            if kind not in (None, OUTPUT) and kind not in kinds:
                kinds.extend(["store", "store-db", "store-wal"] if kind == "store" else [kind])
        for damaged_kind in kinds or [None]:
            n = len(jobs)
            own = work / f"job{n}"
            own.mkdir()
            store_copy = own / "kms"
            shutil.copytree(intact["store"], store_copy)  # each job may change the store it is given

            chosen = intact | {"store": store_copy}
            if damaged_kind is not None:
                chosen[damaged_kind] = broken[damaged_kind]
                if damaged_kind.startswith("store"):  # its own copy: 'kms restore' repairs the store it is given
                    chosen["store"] = chosen[damaged_kind] = own / "damaged" / broken[damaged_kind].name
                    shutil.copytree(broken[damaged_kind], chosen["store"])
            pick = chosen.__getitem__

            argv = list(command)
            for action in parser._actions:
                if action.dest in ("help", "json", "verbose", "_ip_positional") or isinstance(
                        action, argparse._SubParsersAction):  # the address goes with --ip (always given)
                    continue
                kind = input_kind(command, action)
                if kind is None and not (action.required or not action.option_strings or action.dest in _ALWAYS):
                    continue
                if kind == OUTPUT:
                    value = str(own / f"new-{action.dest}")
                elif kind is not None:
                    value = str(pick(kind))
                elif action.dest in ("ip", "ip_option", "first_ip", "to"):
                    value = nobody(n)  # each job its own: a daemon one job starts is no other job's peer
                elif action.dest == "drive_lan_port":  # a daemon a job starts hears no other lab's LAN
                    value = str(JOB_NET.lan_port)
                elif action.dest == "mqtt":
                    value = f"mqtt://{nobody(n)}:1"
                else:
                    value = _VALUES.get(action.dest) or (list(action.choices)[0] if action.choices else "x")
                    if action.choices and value not in action.choices:
                        value = list(action.choices)[0]
                argv += ([action.option_strings[0]] if action.option_strings else []) + [value]
            jobs.append(Job(argv, pick("store"), pick(damaged_kind) if damaged_kind else None, damaged_kind))
    return jobs


@dataclass
class Ran:
    job: Job
    code: int | None  # None: still running after RUN_LIMIT_S, then interrupted
    out: str
    err: str

    @property
    def argv(self) -> list[str]:
        return self.job.argv

    def show(self) -> str:
        return f"t10k {' '.join(self.argv)} (damaged: {self.job.kind}) -> {self.code}\n{self.err}{self.out[-2000:]}"


# Python starts slowly on a busy machine: one process imports the CLI once and forks a
# child per command, each with its own stdin, stdout, stderr, working directory and store.
FORK_RUNNER = r"""
import json, os, signal, sys, time
from lab.cli import build_parser, main
build_parser()  # every command's part imported once, before the forks

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


def run_all(jobs: list[Job], cwd: Path) -> list[Ran]:
    """Each job in its own forked process."""
    import json

    specs = []
    first = len(list(cwd.glob("*.in")))
    for n, job in enumerate(jobs):
        prefix = str(cwd / f"run{first + n}.")
        Path(prefix + "in").write_text("not a password\n")
        specs.append({"argv": job.argv, "store": str(job.store), "cwd": str(cwd), "prefix": prefix})
    done = subprocess.run([sys.executable, "-c", FORK_RUNNER, str(RUN_LIMIT_S), "4"], input=json.dumps(specs),
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    codes = json.loads(done.stdout.splitlines()[-1])
    return [Ran(job, code, Path(s["prefix"] + "out").read_text(errors="replace"),
                Path(s["prefix"] + "err").read_text(errors="replace")) for job, s, code in zip(jobs, specs, codes,
                                                                                               strict=True)]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    return make_world(tmp_path_factory.mktemp("world") / "real")


def test_every_command_is_enumerated() -> None:
    names = {" ".join(c) for c, _ in leaf_commands()}
    assert {"kms list", "kms show", "kms reconcile", "drive manufacture", "token save-image", "pcap decode"} <= names
    assert len(names) >= 60


def is_store_user(argv: list[str]) -> bool:
    """The KMS commands that open their store."""
    return argv[0] == "kms" and argv[1] not in ("init", "plan", "watch", "restore", "failover")


@pytest.mark.parametrize("how", list(DAMAGE))
def test_no_command_shows_a_traceback_on_damaged_inputs(world: World, how: str, tmp_path: Path) -> None:
    broken = damaged(world, how, tmp_path / "broken")
    jobs = jobs_for(world.files, broken, tmp_path)
    assert len({" ".join(j.argv[:2]) for j in jobs}) == len(leaf_commands())
    results = run_all(jobs, tmp_path)
    traced = [r for r in results if "Traceback" in r.err + r.out]
    assert not traced, "\n\n".join(r.show() for r in traced)
    # A command that fails says so in one line, naming the damaged file (or the address where
    # nothing answers: a truncated capture still replays what it holds). Progress lines of long
    # operations may come before it on standard error; the error is the one "t10k: error:" line.
    failed = [r for r in results if r.code not in (0, None)]
    unclear = [r for r in failed if len(errors := [line for line in r.err.splitlines() if line.startswith("t10k: error:")])
               != 1 or r.err.splitlines()[-1] != errors[0] or (
        r.job.damaged and str(r.job.damaged) not in r.err and NOBODY not in r.err and f"{JOB_NET.prefix}." not in r.err
        and "nothing answers at" not in r.err)]
    assert not unclear, "\n\n".join(r.show() for r in unclear)
    # A KMS command on a damaged store fails, with the way out. (SQLite reads a WAL cut short,
    # or empty, as that of a store that stopped mid-write: such a store opens.)
    on_store = [r for r in results if is_store_user(r.argv) and r.job.kind in ("store", "store-db", "store-wal")
                and (r.job.kind != "store-wal" or how == "random")]
    assert len(on_store) >= 2 * 30
    no_way_out = [r for r in on_store if r.code != 1 or "t10k kms restore latest" not in r.err]
    assert not no_way_out, "\n\n".join(r.show() for r in no_way_out)


def test_a_damaged_store_is_restored_as_the_error_says(world: World, tmp_path: Path) -> None:
    store = damaged(world, "halved", tmp_path)["store"]
    (ran,) = run_all([Job(["kms", "list", "--store", str(store)], store, store, "store")], tmp_path)
    assert ran.code == 1 and "t10k kms restore latest" in ran.err
    command = ran.err.split(": ")[-1].strip().replace("BACKUP_KEY_FILE", str(world.files["key-file"])).split()
    (restored,) = run_all([Job(command[1:], store, None, None)], tmp_path)
    assert restored.code == 0, restored.show()
    (listed,) = run_all([Job(["kms", "list", "--store", str(store), "--json"], store, None, None)], tmp_path)
    assert listed.code == 0 and '"d0"' in listed.out
