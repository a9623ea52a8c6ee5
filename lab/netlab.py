"""A topology brought up as separate processes: in network namespaces as root, else on loopback.

Network-namespace mode: one bridge, and for each site a token-bay namespace and a drive
namespace on it (so key broadcasts really cross the bridge), with addresses in
198.18.0.0/15; the KMS stays in the root namespace with an address in every site subnet.
Loopback mode: the same processes on 127.18.*.* addresses, one shared broadcast domain.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from drive_daemon.credential import write_credential_file
from drive_daemon.vop import VopError, vop_status
from kms_client import station
from kms_client.keyadmin import set_backupkey
from kms_client.store import KmsStore
from protocol import VopStatus
from protocol.constants import DRIVE_LAN_PORT, TOKEN_MGMT_PORT, EncryptionLed
from protocol.manufacturing import format_manufacturing, make_drives
from protocol.timestamps import format_timestamp

from .addresses import LabNet, clashes
from .cluster import LabTimeout
from .topology import Site, Topology
from .errors import NetLabError  # noqa: F401 - re-exported: its home before lab/errors.py

BRIDGE = "t10k-br"
ROOT = Path(__file__).resolve().parents[1]



def can_use_netns() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _run(*cmd: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise NetLabError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[str]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class NetworkLab:
    def __init__(self, topology: Topology, state_dir: Path, *, netns: bool, announce_interval_s: float = 1.0,
                 lan_port: int = DRIVE_LAN_PORT, progress: Callable[[str], None] | None = None,
                 mqtt: str | None = None) -> None:
        """``lan_port``: the drive LAN's UDP port (loopback mode: give each lab its own, see lab/addresses.py);
        ``progress`` hears each site starting, enrolling and arming; ``mqtt``: every daemon publishes its
        state there, each site under its own name (docs/EVENTS.md)."""
        # absolute: the daemons run from the repository's directory, not the caller's
        self.topology, self.state_dir, self.netns = topology, state_dir.absolute(), netns
        self.announce_interval_s = announce_interval_s
        self.lan_port = lan_port
        self.mqtt = mqtt
        self._say = progress or (lambda text: None)
        self.daemons: list[Daemon] = []
        self.kms: KmsStore | None = None
        self._made: dict[str, list[Any]] = {}

    # --- names ----------------------------------------------------------------

    @staticmethod
    def namespace(site: Site, role: str) -> str:
        return f"t10k-{site.index}-{role}"

    def _prefix(self, site: Site, role: str) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(site, role)] if self.netns else []

    # --- network ----------------------------------------------------------------

    def _network_up(self) -> None:
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0:
            raise NetLabError(f"bridge {BRIDGE} exists: another lab is up, or one crashed ('t10k lab down' cleans up)")
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "link", "set", BRIDGE, "up")
        for site in self.topology.sites:
            _run("ip", "addr", "add", f"{site.kms_ip(True)}/24", "dev", BRIDGE)
            for role, ips in (("bay", site.token_ips(True)), ("lib", site.drive_ips(True))):
                ns, veth = self.namespace(site, role), f"t10k{site.index}{role[0]}"
                _run("ip", "netns", "add", ns)
                _run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _run("ip", "link", "set", veth, "master", BRIDGE, "up")
                _run("ip", "-n", ns, "link", "set", "lo", "up")
                _run("ip", "-n", ns, "link", "set", "eth0", "up")
                for ip in ips:
                    _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")

    def network_down(self) -> None:
        """Remove every namespace and the bridge of this topology (also after a crash).

        Each veth pair is deleted from the host side first: that is synchronous, whereas the
        kernel tears a deleted namespace's devices down later, and a lab brought up right
        after would find the old veth names still taken."""
        for site in self.topology.sites:
            for role in ("bay", "lib"):
                subprocess.run(["ip", "link", "del", f"t10k{site.index}{role[0]}"], capture_output=True)
                subprocess.run(["ip", "netns", "del", self.namespace(site, role)], capture_output=True)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)

    def set_link(self, site: Site, role: str, up: bool) -> None:
        """Take a site's link to the bridge down or up (the host side of its veth)."""
        _run("ip", "link", "set", f"t10k{site.index}{role[0]}", "up" if up else "down")

    # --- processes ----------------------------------------------------------------

    def _events(self, site: Site) -> list[str]:
        return ["--mqtt", self.mqtt, "--site", site.name] if self.mqtt else []

    def _start(self, name: str, prefix: list[str], *args: str) -> str:
        logs = self.state_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        err = open(logs / f"{name}.log", "w")
        proc = subprocess.Popen([*prefix, sys.executable, "-m", "lab.cli", *args], cwd=ROOT, text=True,
                                stdout=subprocess.PIPE, stderr=err)
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if "serving" not in line:
            proc.kill()
            raise NetLabError(f"{name} did not start: {(logs / f'{name}.log').read_text()[-500:]}")
        self.daemons.append(Daemon(name, proc))
        self._say(f"  {name}: {line.strip()} (pid {proc.pid})")
        return line

    def up(self) -> None:
        if self.state_dir.exists() and any(self.state_dir.iterdir()):
            raise NetLabError(f"{self.state_dir} is not empty: give a new directory for the lab's state")
        if not self.netns:
            self._check_addresses()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            if self.netns:
                self._say(f"network: bridge {BRIDGE}, a namespace per token bay and per drive library")
                self._network_up()
            self.kms = KmsStore.create(self.state_dir / "kms", dbkey=os.urandom(32), kms_id=os.urandom(4))
            set_backupkey(self.kms, os.urandom(32))
            secrets = self.state_dir / "secrets"
            secrets.mkdir()
            first_serial = 0x5800_0000_0000_0001
            for site in self.topology.sites:
                self._say(f"site {site.name}: starting {len(site.tokens)} token(s) and {site.drives} drive(s)")
                made = make_drives(site.drives, first_serial=first_serial + 1000 * site.index)
                self._made[site.name] = made
                cd = self.state_dir / f"{site.name}-cd.json"
                cd.write_text(format_manufacturing(made))
                for name, m, ip in zip(site.drive_names(), made, site.drive_ips(self.netns), strict=True):
                    self.kms.add_drive(name, m.csn, m.pckey, m.model, ip)
                for token, ip in zip(site.tokens, site.token_ips(self.netns), strict=True):
                    secret = self.kms.add_token(token, ip, TOKEN_MGMT_PORT)
                    (secrets / token).write_text(secret.hex())
                    (secrets / token).chmod(0o600)
                    self._start(token, self._prefix(site, "bay"), "token", "run", "--ip", ip,
                                "--state", str(self.state_dir / "tokens" / token),
                                "--secret-file", str(secrets / token), "--broadcast", site.broadcast(self.netns),
                                "--announce-interval", str(self.announce_interval_s),
                                "--drive-lan-port", str(self.lan_port), *self._events(site))
                # The library's service credential: what 't10k vop reset --credential-file' needs.
                credential = secrets / f"{site.name}-drives"
                write_credential_file(credential)
                self._start(f"{site.name}-drives", self._prefix(site, "lib"), "drive", "run-many",
                            "--manufacturing", str(cd), "--first-ip", site.drive_ips(self.netns)[0],
                            "--state", str(self.state_dir / "drives" / site.name),
                            "--service-credential-file", str(credential),
                            "--broadcast", site.broadcast(self.netns), "--drive-lan-port", str(self.lan_port),
                            *self._events(site))
        except BaseException:
            self.down()
            raise

    def start_console(self, listen: str) -> str:
        """The KMS console on the lab's store (``t10k kms serve``); returns its URL. The store gets
        operator logins first (the console serves no store without them): KmsAdm, whose default
        password is changed at first login; from then on the CLI needs a session too."""
        import json

        from kms_client import operators

        assert self.kms is not None, "bring the lab up first"
        if not operators.roles_enabled(self.kms):
            operators.enable_roles(self.kms)
        line = self._start("console", [], "kms", "serve", "--store", str(self.state_dir / "kms"), "--listen", listen,
                           "--json", *(["--mqtt", self.mqtt] if self.mqtt else []))
        return str(json.loads(line)["url"])

    def _check_addresses(self) -> None:
        """Loopback mode: every site's 127.18.i.0/24 addresses must be free; a clash names its holder."""
        for site in self.topology.sites:
            net = LabNet(ipaddress.IPv4Network(f"{site.network(False)}.0/24"), self.lan_port)
            taken = clashes(net, len(site.tokens), site.drives)
            if taken:
                raise NetLabError(f"site {site.name}'s addresses are in use: {'; '.join(taken[:3])}. Another "
                                  f"'t10k lab up' in loopback mode may be running: stop it first")

    def down(self) -> None:
        for d in reversed(self.daemons):
            d.stop()
        self.daemons.clear()
        if self.kms is not None:
            self.kms.close()
            self.kms = None
        if self.netns:
            self.network_down()

    # --- keys -------------------------------------------------------------------

    async def wait_until(self, site: Site, predicate: Any, what: str, timeout_s: float = 20.0) -> list[VopStatus]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                statuses = [await vop_status(ip) for ip in site.drive_ips(self.netns)]
            except VopError:
                statuses = []
            if statuses and all(predicate(s) for s in statuses):
                return statuses
            if time.monotonic() > deadline:
                raise LabTimeout(f"site {site.name}: drives not {what} after {timeout_s:.0f} s")
            await asyncio.sleep(0.1)

    async def arm(self) -> None:
        """Enrol every site's drives (EKT, PCkey), then map its keys and write its OKTs."""
        kms = self.kms
        assert kms is not None, "bring the lab up first"
        await asyncio.gather(*(self._enrol(site) for site in self.topology.sites))
        key_ids = {}
        for key in self.topology.keys:
            key_ids[key] = kms.create_key(f"{key} of {self.topology.name}")
            kms.create_key_set(f"KS-{key}")
            kms.add_key_to_set(f"KS-{key}", key_ids[key])
        for site in self.topology.sites:
            kms.create_pool(site.name)
            for drive in site.drive_names():
                kms.add_drive_to_pool(site.name, drive)
            kms.set_mapping(site.name, [f"KS-{k}" for k in site.keys], key_ids[site.write_key])
        await asyncio.gather(*(self._write_okts(site) for site in self.topology.sites))

    async def _enrol(self, site: Site) -> None:
        assert self.kms is not None
        self._say(f"site {site.name}: enrolling {site.drives} drive(s) (EKT, use PCkey, via {site.tokens[0]})")
        await station.write_ekt(self.kms, site.tokens[0], site.drive_names(), use_pckey=True)
        await self.wait_until(site, lambda s: s.encryption_enabled, "enrolled")
        self._say(f"site {site.name}: enrolled (LED AMBER)")

    async def _write_okts(self, site: Site) -> None:
        assert self.kms is not None
        self._say(f"site {site.name}: arming (OKT with {', '.join(site.keys)} to {', '.join(site.tokens)})")
        for token in site.tokens:
            await station.write_okt(self.kms, token, site.name)
        ts = self.kms.mapping(site.name).timestamp
        await self.wait_until(site, lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == ts, "armed")
        self._say(f"site {site.name}: armed (LED RED)")

    async def status(self) -> list[dict[str, Any]]:
        assert self.kms is not None
        names = {k: n for n in self.topology.keys for k in [self.kms.key_set_members(f"KS-{n}")[0]]}
        rows = []
        for site in self.topology.sites:
            for name, ip in zip(site.drive_names(), site.drive_ips(self.netns), strict=True):
                s = await vop_status(ip)
                rows.append({"site": site.name, "drive": name, "ip": ip, "led": s.led.name,
                             "write_key": names.get(s.write_key_id, "-"), "keys": s.media_key_count,
                             "okt_time": format_timestamp(s.okt_timestamp)})
        return rows
