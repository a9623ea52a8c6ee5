"""A live lab for attack tests: one token, four drives and a KMS, in a process of their own.

``LabProcess`` runs ``python -m tests.attacks.lab WORKDIR``: the in-process lab of
lab/cluster.py (free addresses from lab/addresses.py, real sockets), enrolled and armed
(EKT, then an OKT of pool ``POOL``). The test process is the attacker: it has its own CPU,
and it asks the lab over a pipe (one JSON line each way) for what only the lab knows:

- ``counters``: every counter of the token, the drive host and each iSCSI portal;
- ``received``: only the datagrams the token and the drive host took in (cheap, for pacing);
- ``health``: whether the daemons' tasks and sockets are still up;
- ``rearm``: a fresh OKT (a new key mapped to the pool), waiting until every drive is armed by it;
- ``stop``.

The lab's RSS is read from /proc, so a daemon that leaks shows as the lab process growing.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kms_client import station
from lab.cluster import Lab, LabPlan
from protocol.constants import EncryptionLed

POOL = "pool-1"
PLAN = LabPlan(token_names=("token-A",), drive_count=4, announce_interval_s=0.3)
ROOT = Path(__file__).resolve().parents[2]
#: How long a fresh OKT may take to arm every drive. Until forged offers are refused by design
#: (issue 13, finding 6), a forged KEYS_AVAILABLE holds a drive in a pull to a source that never
#: answers until its retries run out (drive_daemon/drive.retry_delay: tens of seconds).
REARM_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class LabInfo:
    """Where the lab's daemons listen, and the token's secret (the attacker of a test may hold it)."""

    pid: int
    token_ip: str
    token_secret: bytes
    drive_ips: tuple[str, ...]
    drive_csns: tuple[bytes, ...]
    broadcast: str
    lan_port: int
    net: str
    prefix: str

    def host(self, n: int) -> str:
        """Another address in the lab's /24 (an attacker on the drive LAN)."""
        return f"{self.prefix}.{n}"


class LabProcess:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: LabInfo | None = None
        #: VmRSS and VmHWM once the lab was armed: what later growth is measured from
        self.baseline: dict[str, int] = {}

    def __enter__(self) -> LabProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 60.0) -> LabInfo:
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "lab.log", "wb")  # noqa: SIM115 - the child writes it until it ends
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.attacks.lab", str(self.workdir)], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        log.close()
        ready = self._read(timeout_s)
        self.info = LabInfo(pid=self.proc.pid, token_ip=ready["token_ip"],
                            token_secret=bytes.fromhex(ready["token_secret"]), drive_ips=tuple(ready["drive_ips"]),
                            drive_csns=tuple(bytes.fromhex(c) for c in ready["drive_csns"]),
                            broadcast=ready["broadcast"], lan_port=ready["lan_port"], net=ready["net"],
                            prefix=ready["prefix"])
        self.baseline = self.memory_kib()
        return self.info

    def _read(self, timeout_s: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            raise AssertionError(f"the lab process gave no answer within {timeout_s} s "
                                 f"(exit {self.proc.poll()}); see {self.workdir / 'lab.log'}: {self.log_tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise AssertionError(f"the lab process failed: {answer['error']}")
        return answer

    def log_tail(self, n: int = 2000) -> str:
        try:
            return (self.workdir / "lab.log").read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def ask(self, command: str, timeout_s: float = 30.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"command": command}).encode() + b"\n")
        self.proc.stdin.flush()
        return self._read(timeout_s)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak) of the lab process, in KiB."""
        assert self.proc is not None
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = int(value.split()[0])
        return fields

    def cpu_seconds(self) -> float:
        """User and system CPU time the lab process has used: a rate per CPU second does not
        depend on what else the machine runs."""
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.ask("stop", timeout_s=20)
            except (AssertionError, OSError, ValueError):
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


# --- the lab's side ----------------------------------------------------------------


def _plain(counters: object) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in vars(counters).items()}


def counters(lab: Lab) -> dict[str, Any]:
    (token,) = lab.tokens.values()
    iscsi: dict[str, int] = {}
    for hosted in lab.drives.drives.values():
        if hosted.iscsi is not None:
            for reason, n in hosted.iscsi.errors.items():
                iscsi[reason] = iscsi.get(reason, 0) + n
    return {"token": _plain(token.counters) | {"errors_held": len(token.token.memory.errors)},
            "drives": _plain(lab.drives.counters), "iscsi": iscsi}


def health(lab: Lab) -> dict[str, Any]:
    (token,) = lab.tokens.values()
    tasks = {t.get_name(): not t.done() for t in token._tasks}  # noqa: SLF001 - the lab looks inside its own daemons
    drives = {}
    for csn, hosted in lab.drives.drives.items():
        # its UDP socket open, its VOP and iSCSI listeners serving, the iSCSI idle timer running
        drives[csn.hex()] = hosted.link is not None and hosted.link.serving
    return {"token_tasks": tasks, "drives": drives, "persist_error": token.persist_error}


async def rearm(lab: Lab, n: int, timeout_s: float) -> dict[str, Any]:
    """The seed's Method 1 as Lab.map_new_key does it, with a longer wait: a drive may be busy
    with a pull an attacker's offer started, and the test reports how long it took."""
    started = time.monotonic()
    kms = lab.kms
    key = kms.create_key()
    kms.create_key_set(f"KS-fresh-{n}")
    kms.add_key_to_set(f"KS-fresh-{n}", key)
    mapping = kms.set_mapping(POOL, [f"KS-fresh-{n}"], key)
    await station.write_okt(kms, lab.token_names[0], POOL)
    statuses = await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp,
                                    "armed by the fresh OKT", timeout_s=timeout_s)
    return {"key_id": key.hex(), "seconds": time.monotonic() - started,
            "drives": {name: {"led": s.led.name, "write_key_id": s.write_key_id.hex(), "okt_timestamp": s.okt_timestamp}
                       for name, s in statuses.items()}}


async def serve(workdir: Path) -> None:
    def say(answer: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()

    async with Lab(workdir, PLAN) as lab:
        await lab.arm(POOL)
        (name,) = lab.token_names
        say({"token_ip": lab.token_ips[name], "token_secret": lab._secrets[name].hex(),  # noqa: SLF001
             "drive_ips": list(lab.drive_ips.values()), "drive_csns": [c.hex() for c in lab.drive_csns.values()],
             "broadcast": lab.net.broadcast, "lan_port": lab.net.lan_port, "net": str(lab.net),
             "prefix": lab.net.prefix})
        fresh = 0
        while True:
            line = await asyncio.to_thread(sys.stdin.readline)
            command = json.loads(line)["command"] if line.strip() else "stop"
            try:
                if command == "counters":
                    say(counters(lab))
                elif command == "received":  # cheap, asked often: datagrams each side has taken in
                    (token,) = lab.tokens.values()
                    say({"token": token.counters.datagrams_in + token.counters.dropped,
                         "drives": lab.drives.counters.datagrams_in})
                elif command == "health":
                    say(health(lab))
                elif command == "rearm":
                    fresh += 1
                    say(await rearm(lab, fresh, REARM_TIMEOUT_S))
                elif command == "stop":
                    say({"stopped": True})
                    return
                else:
                    say({"error": f"unknown command {command!r}"})
            except Exception as exc:  # noqa: BLE001 - said to the test, which fails with it
                say({"error": f"{command}: {type(exc).__name__}: {exc}"})


if __name__ == "__main__":
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(Path(sys.argv[1])))
    except Exception as exc:  # noqa: BLE001 - the test reads this line
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        sys.stdout.flush()
        raise
    os._exit(0)
