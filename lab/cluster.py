"""An in-process lab: a KMS store, tokens and drives at their own 127.x addresses.

The addresses are a free 127.x.y.0/24 and drive-LAN port found at start (lab/addresses.py),
or the ones the plan gives, checked first: an address in use names its holder.

They share an event loop but meet only on the wire: the KMS pushes over TCP, the
tokens broadcast over UDP, and the lab reads drives back through their VOP.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from drive_daemon.credential import read_credential_file, write_credential_file
from drive_daemon.service import DriveHost, DriveHostConfig, Tap
from drive_daemon.sockets import SocketMode
from events import EventPublisher
from drive_daemon.vop import vop_reset, vop_status
from kms_client import station
from kms_client.keyadmin import set_backupkey
from kms_client.store import KmsStore
from protocol import VopResult, VopStatus
from protocol.constants import TOKEN_MGMT_PORT, EncryptionLed
from protocol.manufacturing import format_manufacturing, make_drives, parse_manufacturing
from token_daemon.service import TokenConfig, TokenService

from .addresses import LabNet, allocate, ensure_free
from .errors import LabTimeout  # noqa: F401 - re-exported: its home before lab/errors.py


@dataclass(frozen=True)
class LabPlan:
    token_names: tuple[str, ...] = ("token-A", "token-B")
    drive_count: int = 8
    #: Where the lab lives; None: a free 127.x.y.0/24 and drive-LAN port are found at start.
    net: LabNet | None = None
    announce_interval_s: float = 0.5
    kms_id: bytes = field(default_factory=lambda: os.urandom(4))
    #: The drive host's sockets (drive_daemon/sockets.py); shared binds wildcard ports: a namespace of its own.
    sockets: SocketMode = SocketMode.AUTO



class Lab:
    def __init__(self, workdir: Path, plan: LabPlan | None = None, *, tap: Tap | None = None,
                 mqtt: str | None = None) -> None:
        self.workdir = workdir
        self.plan = plan or LabPlan()
        self._tap = tap
        self._mqtt = mqtt
        self.publisher: EventPublisher | None = None
        self.store: KmsStore | None = None
        self.tokens: dict[str, TokenService] = {}
        self.host: DriveHost | None = None
        self.drive_ips: dict[str, str] = {}
        self.token_ips: dict[str, str] = {}
        self._net: LabNet | None = None
        self.drive_csns: dict[str, bytes] = {}
        self._secrets: dict[str, bytes] = {}

    @property
    def net(self) -> LabNet:
        assert self._net is not None, "the lab is not started"
        return self._net

    @property
    def token_names(self) -> list[str]:
        return list(self.plan.token_names)

    @property
    def kms(self) -> KmsStore:
        assert self.store is not None, "the lab is not started"
        return self.store

    @property
    def drives(self) -> DriveHost:
        assert self.host is not None, "the lab is not started"
        return self.host

    @property
    def library(self) -> Path:
        """The cartridge library every drive of the lab can load from."""
        return self.workdir / "library"

    @property
    def credential_file(self) -> Path:
        """The drive host's service credential (VOP Reset Drive needs it), written at start."""
        return self.workdir / "service-credential"

    @property
    def drive_names(self) -> list[str]:
        return list(self.drive_ips)

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        plan = self.plan
        if plan.net is None:
            self._net = allocate(len(plan.token_names), plan.drive_count)
        else:
            ensure_free(plan.net, len(plan.token_names), plan.drive_count)
            self._net = plan.net
        net = self._net
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.publisher = EventPublisher.optional(self._mqtt)
        manufacturing = self.workdir / "manufacturing.json"
        manufacturing.write_text(format_manufacturing(make_drives(self.plan.drive_count)))
        made = parse_manufacturing(manufacturing.read_text())
        self.store = KmsStore.create(self.workdir / "kms", dbkey=os.urandom(32), kms_id=self.plan.kms_id)
        set_backupkey(self.store, os.urandom(32))  # a backup is taken on every token write
        placed = []
        for i, m in enumerate(made):
            name, ip = f"drive-{i + 1:02d}", net.drive_ip(i)
            self.store.add_drive(name, m.csn, m.pckey, m.model, ip)  # one at a time (limitation 4)
            self.drive_ips[name], self.drive_csns[name] = ip, m.csn
            placed.append((m, ip))
        for i, name in enumerate(plan.token_names):
            self.token_ips[name] = net.token_ip(i)
            self._secrets[name] = self.store.add_token(name, net.token_ip(i), TOKEN_MGMT_PORT)
            try:
                await self.insert_token(name)
            except BaseException:
                await self.stop()
                raise
        if not self.credential_file.exists():
            write_credential_file(self.credential_file)
        config = DriveHostConfig(self.workdir / "drives", listen_broadcast=net.broadcast, lan_port=net.lan_port,
                                 library=self.library, service_credential=read_credential_file(self.credential_file),
                                 sockets=plan.sockets)
        host = DriveHost(config, placed, tap=self._tap, events=self.publisher)
        try:
            await host.start()
        except BaseException:
            await self.stop()  # the tokens already in the bay
            raise
        self.host = host

    async def stop(self) -> None:
        for name in list(self.tokens):
            await self.remove_token(name)
        if self.host is not None:
            await self.host.flush()
            await self.host.stop()
        if self.store is not None:
            self.store.close()
        if self.publisher is not None:
            await self.publisher.stop()

    # --- tokens in and out of the bay ---------------------------------------

    async def insert_token(self, name: str) -> TokenService:
        net = self.net
        config = TokenConfig(self.token_ips[name], self.workdir / name, self._secrets[name], broadcast=net.broadcast,
                             drive_lan_port=net.lan_port, announce_interval_s=self.plan.announce_interval_s)
        service = TokenService(config, tap=self._tap, events=self.publisher)
        await service.start()
        self.tokens[name] = service
        return service

    async def remove_token(self, name: str) -> None:
        await self.tokens.pop(name).stop()

    # --- the operator's routine ------------------------------------------------

    async def enrol(self, *, token: str | None = None, names: list[str] | None = None) -> None:
        """An EKT with 'use PCkey' for the drives; wait until every one is enabled (amber)."""
        names = names or self.drive_names
        await station.write_ekt(self.kms, token or self.plan.token_names[0], names, use_pckey=True)
        await self.wait_until(lambda s: s.led is EncryptionLed.AMBER, "amber (device keys)", names=names)

    async def map_new_key(self, pool: str, key_set: str, *, keep: tuple[str, ...] = (),
                          tokens: tuple[str, ...] | None = None) -> bytes:
        """The seed's Method 1: a new key set holding a new write key, mapped beside ``keep``;
        the OKT written to ``tokens``; wait until the pool's drives are armed with it."""
        kms = self.kms
        key = kms.create_key()
        kms.create_key_set(key_set)
        kms.add_key_to_set(key_set, key)
        mapping = kms.set_mapping(pool, [*keep, key_set], key)
        for token in tokens or (self.plan.token_names[0],):
            await station.write_okt(kms, token, pool)
        names = [d.name for d in kms.pool_drives(pool)]
        await self.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp,
                              "red (armed)", names=names)
        return key

    async def arm(self, pool: str = "pool-1", *, tokens: tuple[str, ...] | None = None) -> bytes:
        """Enrol every drive, put them in ``pool`` and map it one key (key set KS1); returns the key ID."""
        await self.enrol()
        self.kms.create_pool(pool)
        for name in self.drive_names:
            self.kms.add_drive_to_pool(pool, name)
        return await self.map_new_key(pool, "KS1", tokens=tokens)

    # --- drives -------------------------------------------------------------

    def power_cycle(self, names: list[str] | None = None) -> None:
        for name in names or self.drive_names:
            self.drives.drives[self.drive_csns[name]].power_cycle()

    async def vop(self, name: str) -> VopStatus:
        return await vop_status(self.drive_ips[name])

    async def vop_reset(self, name: str) -> VopResult:
        """VOP Reset Drive, answered with the drive host's service credential."""
        return await vop_reset(self.drive_ips[name], read_credential_file(self.credential_file))

    async def vop_all(self) -> dict[str, VopStatus]:
        statuses = await asyncio.gather(*(self.vop(n) for n in self.drive_names))
        return dict(zip(self.drive_names, statuses, strict=True))

    async def wait_until(
        self, predicate: Callable[[VopStatus], bool], what: str, *, names: list[str] | None = None,
        timeout_s: float = 10.0,
    ) -> dict[str, VopStatus]:
        """Poll every drive's VOP until all satisfy ``predicate``."""
        names = names or self.drive_names
        deadline = time.monotonic() + timeout_s
        while True:
            statuses = {n: await self.vop(n) for n in names}
            if all(predicate(s) for s in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                lagging = [f"{n} ({s.led.name}, {'/'.join(f for f in s.status_fields if f) or '-'})"
                           for n, s in statuses.items() if not predicate(s)]
                raise LabTimeout(f"after {timeout_s:.0f} s, not every drive is {what}: {', '.join(lagging)}")
            await asyncio.sleep(0.05)
