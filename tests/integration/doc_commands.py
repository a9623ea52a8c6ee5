"""Run the shell commands a document shows, in order, as a reader would (see test_doc_commands.py).

Extraction is pure (``extract``); ``run_document`` copies the repository, writes one bash script
for the document and runs it as the only process tree of a private machine: its own network,
mount and PID namespaces (``unshare``), with a loopback, an ``eth0`` and copy-on-write /etc, /opt
and /var. Every process a document starts dies with that PID namespace.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STANDIN = Path(__file__).with_name("systemctl_standin.py")
ARGS_ONLY = Path(__file__).with_name("argsonly")  # its sitecustomize.py, for ```sh slow blocks

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
# What a reader substitutes, written <like this> in a document; anything else in angle brackets fails.
PLACEHOLDERS = {"<this repository>": "{repo}"}
STEP_TIMEOUT_S = 180.0  # one command (BENCHMARKS.md's runs are the longest)
DOC_TIMEOUT_S = 900.0
READY_TIMEOUT_S = 30.0  # a background command must say it is up within this
READY = re.compile(r"serving|running|listening|ready", re.IGNORECASE)
COPY_IGNORE = shutil.ignore_patterns(".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info",
                                     "build", "dist", "demo-out")


@dataclass(frozen=True)
class Command:
    doc: str
    line: int
    text: str
    slow: bool = False  # in a ```sh slow block: arguments checked, not run

    @property
    def background(self) -> bool:
        last = self.text.rstrip().splitlines()[-1]
        return re.search(r"(?<![&>|])&\s*(#[^']*)?$", last) is not None

    def where(self) -> str:
        return f"{self.doc}:{self.line}"


class DocumentError(Exception):
    """A document's commands cannot be taken as written (bad fence, unknown placeholder)."""


def _complete(text: str) -> bool:
    """Whether ``text`` is a whole shell command (bash -n parses it), not the start of one."""
    if text.rstrip().endswith("\\"):
        return False
    check = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
    return "unexpected end of file" not in check.stderr and "delimited by end-of-file" not in check.stderr


def extract(path: Path, *, name: str | None = None) -> list[Command]:
    """Every command of the ```sh / ```bash / ```console blocks of one Markdown file, in order."""
    name = name or str(path.relative_to(ROOT))
    commands: list[Command] = []
    fence: str | None = None
    language, slow = "", False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if fence is None:
            match = re.match(r"^(`{3,}|~{3,})\s*([\w+-]*)\s*(.*)$", line)
            if match:
                fence, language = match.group(1), match.group(2).lower()
                slow = match.group(3).strip() == "slow"
            continue
        if line.startswith(fence):
            if pending:
                raise DocumentError(f"{name}:{start}: the block ends inside a command: {' '.join(pending)!r}")
            fence = None
            continue
        if language not in SHELL_LANGUAGES:
            continue
        if language == "console":
            if pending and line.startswith("> "):
                line = line[2:]
            elif line.startswith("$ "):
                line = line[2:]
            elif not pending:
                continue  # output: shown, not compared
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        pending.append(line)
        text = "\n".join(pending)
        if _complete(text):
            commands.append(Command(name, start, text, slow))
            pending = []
    if fence is not None:
        raise DocumentError(f"{name}: a ``` block is never closed")
    for command in commands:
        for placeholder in re.findall(r"<[a-z][a-z ]*[a-z]>", command.text):
            if placeholder not in PLACEHOLDERS:
                raise DocumentError(f"{command.where()}: unknown placeholder {placeholder} in {command.text!r}; "
                                    f"known: {', '.join(PLACEHOLDERS)}")
    return commands


# The machine: set up by PID 1 of the new namespaces before the document's first command.
MACHINE = r"""
ip link set lo up
ip link add eth0 type veth peer name eth0-peer && ip link set eth0 up && ip link set eth0-peer up
mount --make-rprivate /
for dir in /etc /opt /var /run; do  # /run: the namespaces `ip netns add` names stay ours
    mkdir -p "$__M/upper$dir" "$__M/work$dir"
    mount -t overlay overlay -o "lowerdir=$dir,upperdir=$__M/upper$dir,workdir=$__M/work$dir" "$dir"
done
mkdir -p /etc/systemd/system
"""

PRELUDE = r"""
__PIDS=()
__step() { echo "$1" > "$__LOGS/step"; }
__fail() { echo "$2" > "$__LOGS/$1.rc"; __stop; exit 97; }
__stop() {
    for pid in "${__PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for _ in $(seq 50); do
        alive=0; for pid in "${__PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && break; sleep 0.1
    done
}
__ready() {  # step number, pid: the background command says it is up, or the step fails
    for _ in $(seq $(( __READY_S * 10 ))); do
        grep -qiE 'serving|running|listening|ready' "$__LOGS/$1.log" 2>/dev/null && return 0
        kill -0 "$2" 2>/dev/null || { wait "$2"; __fail "$1" "exited with status $? before saying it was up"; }
        sleep 0.1
    done
    __fail "$1" "did not say it was serving within $__READY_S s"
}
make() {  # never builds a venv here and never runs the suite from inside the suite
    [ -e .venv ] || ln -s "$__SUITE_VENV" .venv
    case " $* " in
        *" test "*) command make -n -o .venv/.installed "$@" >/dev/null ;;
        *) command make -o .venv/.installed "$@" ;;
    esac
}
"""


def render_script(commands: list[Command], *, repo: Path) -> str:
    parts = [PRELUDE]
    for i, command in enumerate(commands):
        text = command.text
        for placeholder, value in PLACEHOLDERS.items():
            text = text.replace(placeholder, shlex.quote(value.format(repo=repo)))
        if command.slow:
            text = f"export T10K_DOC_ARGS_ONLY=1\n{text}\nunset T10K_DOC_ARGS_ONLY"
        parts.append(f"__step {i}\n{{\n{text}\n}} >\"$__LOGS/{i}.log\" 2>&1 </dev/null\n")
        if command.background:
            parts.append(f"__rc=$?; __PIDS+=($!); echo $! > \"$__LOGS/{i}.pid\"; __ready {i} $!\n")
        else:
            parts.append(f"__rc=$?; [ $__rc = 0 ] || __fail {i} \"exit status $__rc\"\n")
    parts.append('__step done\n__stop\n')
    return "".join(parts)


@dataclass
class DocRun:
    commands: list[Command]
    logs: Path
    failed: int | None
    reason: str
    seconds: float

    def output(self, i: int) -> str:
        log = self.logs / f"{i}.log"
        return log.read_text(errors="replace") if log.exists() else "(no output)"

    def report(self) -> str:
        """For a failure: the document, the line, the command, its output, and the daemons' output."""
        if self.failed is None:
            return "ok"
        command = self.commands[self.failed]
        lines = [f"{command.where()}: `{command.text}` failed: {self.reason}",
                 "--- its output:", _tail(self.output(self.failed))]
        for i, other in enumerate(self.commands[:self.failed]):
            if other.background:
                lines += [f"--- background command {other.where()} `{other.text}`:", _tail(self.output(i))]
        lines.append(f"(each command's output: {self.logs}/N.log; the document's commands run in order in a "
                     f"fresh copy, see tests/integration/test_doc_commands.py)")
        return "\n".join(lines)


def _tail(text: str, lines: int = 40) -> str:
    kept = text.rstrip().splitlines()
    return "\n".join((["..."] if len(kept) > lines else []) + kept[-lines:]) or "(no output)"


def fresh_copy(work: Path) -> Path:
    """The repository's files as a fresh clone has them, in a git repository of their own."""
    repo = work / "t10k-lab"
    shutil.copytree(ROOT, repo, ignore=COPY_IGNORE, symlinks=True)
    git = ["git", "-C", str(repo), "-c", "user.name=doc test", "-c", "user.email=doc-test@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / ".git" / "info" / "exclude").write_text(".venv\n")
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "fresh copy"], check=True)
    (repo / ".venv").symlink_to(sys.prefix)  # the venv `make` built for this suite run
    return repo


def run_document(doc: Path, work: Path) -> DocRun:
    assert sys.prefix != sys.base_prefix, "run the suite with the venv make builds (.venv/bin/python -m pytest)"
    commands = extract(doc)
    repo = fresh_copy(work)
    logs, machine, bin_dir = work / "logs", work / "machine", work / "bin"
    for d in (logs, machine, bin_dir):
        d.mkdir()
    (bin_dir / "systemctl").write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} {STANDIN} \"$@\"\n")
    (bin_dir / "systemctl").chmod(0o755)
    script = work / "document.sh"
    script.write_text(MACHINE + render_script(commands, repo=repo))
    env = {
        "PATH": f"{bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "HOME": str(work), "LANG": "C.UTF-8", "TERM": "dumb",
        "__M": str(machine), "__LOGS": str(logs), "__SUITE_VENV": sys.prefix, "__READY_S": str(int(READY_TIMEOUT_S)),
        "T10K_STANDIN_RUN": str(machine / "run"), "PYTHONPATH": str(ARGS_ONLY),
        # The user's cache (the QEMU guest's image, built by `make test` before the suite): the
        # documents run in a private network, and a fresh HOME would send them to the mirror.
        "XDG_CACHE_HOME": os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache"),
    }
    started = time.monotonic()
    proc = subprocess.Popen(["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "bash", str(script)],
                            cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    step, step_started, reason = "", started, ""
    while proc.poll() is None:
        now = time.monotonic()
        current = (logs / "step").read_text().strip() if (logs / "step").exists() else ""
        if current != step:
            step, step_started = current, now
        if now - step_started > STEP_TIMEOUT_S or now - started > DOC_TIMEOUT_S:
            reason = f"still running after {now - step_started:.0f} s (limit {STEP_TIMEOUT_S:.0f} s a command)"
            os.killpg(proc.pid, 9)
            proc.wait()
            break
        time.sleep(0.05)
    own_output = proc.stdout.read() if proc.stdout else ""
    if not reason and (logs / "step").exists():
        step = (logs / "step").read_text().strip()
    seconds = time.monotonic() - started
    if reason:
        return DocRun(commands, logs, int(step) if step.isdigit() else 0, reason, seconds)
    failed = next((i for i in range(len(commands)) if (logs / f"{i}.rc").exists()), None)
    if failed is not None:
        return DocRun(commands, logs, failed, (logs / f"{failed}.rc").read_text().strip(), seconds)
    if proc.returncode != 0 or step != "done":
        at = int(step) if step.isdigit() else 0
        return DocRun(commands, logs, at, f"the document's shell exited with status {proc.returncode} (a command "
                      f"ran `exit`, or the machine could not be set up):\n{_tail(own_output)}", seconds)
    return DocRun(commands, logs, None, "", seconds)
