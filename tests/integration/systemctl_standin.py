"""A stand-in for systemctl on the doc test's private machine, which has no systemd.

Enough of systemd to run a document's units as systemd would start them: ``daemon-reload``,
``enable --now`` / ``start``, ``kill -s SIGNAL``, ``stop`` and ``status`` of units in
/etc/systemd/system (templates ``name@.service`` with their instance). It reads
``EnvironmentFile=``, ``Environment=``, ``LoadCredential=`` (copied to a credentials directory,
``%d``), ``StateDirectory=`` and ``ExecStart=`` with systemd's specifiers (%i %I %d %S %%) and
``${VAR}`` / ``$VAR`` expansion, and starts the command in the background. It cannot be a
DynamicUser: the daemon runs as root (``systemd-analyze verify`` checks the units themselves).
``start`` returns once the daemon says it is serving, as a person who waits for the unit would.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

UNITS = Path("/etc/systemd/system")
RUN = Path(os.environ.get("T10K_STANDIN_RUN", "/run/t10k-standin"))


def fail(message: str) -> None:
    print(f"systemctl (doc-test stand-in): {message}", file=sys.stderr)
    sys.exit(1)


def unit_file(unit: str) -> tuple[Path, str]:
    name = unit if unit.endswith(".service") else unit + ".service"
    if "@" in name:
        template, instance = name.split("@", 1)
        path = UNITS / f"{template}@.service"
        return path, instance.removesuffix(".service")
    return UNITS / name, ""


def parse(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        fail(f"Unit {path.name} not found (looked in {UNITS})")
    settings: dict[str, list[str]] = {}
    section = ""
    joined = re.sub(r"\\\n", " ", path.read_text())
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault(f"{section}.{key.strip()}", []).append(value.strip())
    return settings


def specifiers(text: str, instance: str, creds: Path) -> str:
    table = {"i": instance, "I": instance, "d": str(creds), "S": "/var/lib", "%": "%"}
    return re.sub(r"%(.)", lambda m: table[m.group(1)] if m.group(1) in table else fail(f"specifier %{m.group(1)}"),
                  text)


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    out: list[str] = []
    for word in words:
        if re.fullmatch(r"\$(\w+)", word):
            out += env.get(word[1:], "").split()
        else:
            out.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return out


def start(unit: str) -> None:
    path, instance = unit_file(unit)
    cfg = parse(path)
    key = unit.removesuffix(".service")
    pid_file = RUN / f"{key}.pid"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        return
    creds = RUN / "credentials" / key
    env: dict[str, str] = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    for item in cfg.get("Service.EnvironmentFile", []):
        optional = item.startswith("-")
        file = Path(specifiers(item.lstrip("-"), instance, creds))
        if not file.exists():
            if optional:
                continue
            fail(f"{unit}: EnvironmentFile {file} does not exist")
        for line in file.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, _, value = line.partition("=")
                env[name.strip()] = value.strip().strip('"')
    for item in cfg.get("Service.Environment", []):
        for pair in shlex.split(specifiers(item, instance, creds)):
            name, _, value = pair.partition("=")
            env[name] = value
    creds.mkdir(parents=True, exist_ok=True)
    for item in cfg.get("Service.LoadCredential", []):
        cred_id, _, source = specifiers(item, instance, creds).partition(":")
        source_path = Path(source)
        if not source_path.is_file():
            fail(f"{unit}: LoadCredential={item}: {source} does not exist")
        target = creds / cred_id
        target.write_bytes(source_path.read_bytes())
        target.chmod(0o400)
    if cfg.get("Service.LoadCredential"):
        env["CREDENTIALS_DIRECTORY"] = str(creds)
    for item in cfg.get("Service.StateDirectory", []):
        for rel in specifiers(item, instance, creds).split():
            (Path("/var/lib") / rel).mkdir(parents=True, exist_ok=True)
    (exec_start,) = cfg.get("Service.ExecStart") or [""]
    if not exec_start:
        fail(f"{unit}: no ExecStart=")
    argv = expand(shlex.split(specifiers(exec_start, instance, creds)), env)
    RUN.mkdir(parents=True, exist_ok=True)
    log = RUN / f"{key}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            fail(f"{unit}: {argv[0]} exited with status {proc.returncode}:\n{log.read_text()}")
        if "serving" in log.read_text():
            return
        time.sleep(0.1)
    fail(f"{unit} did not say it was serving within 30 s:\n{log.read_text()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def running(unit: str) -> int:
    pid_file = RUN / f"{unit.removesuffix('.service')}.pid"
    if not pid_file.exists() or not _alive(pid := int(pid_file.read_text())):
        fail(f"{unit} is not running")
    return pid


def main(argv: list[str]) -> None:
    if not argv:
        fail("usage: systemctl daemon-reload | enable --now UNIT | start UNIT | kill -s SIG UNIT | stop UNIT")
    verb, rest = argv[0], argv[1:]
    if verb == "daemon-reload":
        if not UNITS.is_dir():
            fail(f"{UNITS} does not exist")
    elif verb in ("enable", "start"):
        units = [u for u in rest if not u.startswith("-")]
        for unit in units:
            parse(unit_file(unit)[0])
            if verb == "start" or "--now" in rest:
                start(unit)
    elif verb == "kill":
        sig = rest[rest.index("-s") + 1] if "-s" in rest else "SIGTERM"
        unit = [u for u in rest if not u.startswith("-") and u != sig][0]
        os.killpg(running(unit), getattr(signal, sig if sig.startswith("SIG") else "SIG" + sig))
    elif verb == "stop":
        for unit in rest:
            os.killpg(running(unit), signal.SIGTERM)
    elif verb == "status":
        for unit in rest:
            pid = running(unit)
            print(f"{unit}: active (running), pid {pid}")
            print((RUN / f"{unit.removesuffix('.service')}.log").read_text())
    else:
        fail(f"{verb}: not something the documents use")


if __name__ == "__main__":
    main(sys.argv[1:])
