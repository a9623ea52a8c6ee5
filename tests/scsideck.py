"""An SSC device on the in-memory LAN: SCSI commands to a drive, its token reports delivered."""

from __future__ import annotations

from pathlib import Path

from drive_daemon.drive import Drive, Output
from drive_daemon.ssc import ScsiOutcome, SscDevice
from drive_daemon.tape import TapeSession
from protocol import scsi
from protocol.constants import ScsiStatus
from protocol.sense import SenseProfile
from tests.site import Site

NEXUS = "iqn.2026-11.org.t10k-lab:host,i,0x400001370000"


class ScsiDeck:
    def __init__(self, site: Site | None, drive: Drive, library: Path, *, ip: str = "",
                 profile: SenseProfile = SenseProfile.T10000, model: str = "T10000A") -> None:
        self.site, self.ip = site, ip
        self.session = TapeSession(drive, library, profile)
        self.device = SscDevice(self.session, model=model)
        self.outputs: list[Output] = []

    @classmethod
    def on(cls, site: Site, ip: str, library: Path, **kw: object) -> ScsiDeck:
        return cls(site, site.lan.drives[ip], library, ip=ip, **kw)  # type: ignore[arg-type]

    def __call__(self, cdb: scsi.Cdb, data_out: bytes | None = None, nexus: str = NEXUS) -> ScsiOutcome:
        now = self.site.lan.now if self.site else 0.0
        outcome = self.device.execute(nexus, cdb.build(), data_out, now)
        if isinstance(outcome.output, Output):
            self.outputs.append(outcome.output)
            if self.site:
                self.site.lan._drive_output(self.ip, outcome.output)
                self.site.lan.run()
        return outcome

    def ok(self, cdb: scsi.Cdb, data_out: bytes | None = None, nexus: str = NEXUS) -> bytes:
        o = self(cdb, data_out, nexus)
        assert o.status == ScsiStatus.GOOD, f"{cdb}: {scsi.SenseData.parse(o.sense).seed if o.sense else o.status}"
        return bytes(o.data_in)

    def check(self, cdb: scsi.Cdb, data_out: bytes | None = None, nexus: str = NEXUS) -> scsi.SenseData:
        o = self(cdb, data_out, nexus)
        assert o.status == ScsiStatus.CHECK_CONDITION, f"{cdb} gave status {o.status}"
        return scsi.SenseData.parse(o.sense)

    def seed(self, cdb: scsi.Cdb, data_out: bytes | None = None) -> str:
        """The seed's notation for what the host saw: 'none' or SK/ASCASCQ/FSC."""
        o = self(cdb, data_out)
        return "none" if o.status == ScsiStatus.GOOD else str(scsi.SenseData.parse(o.sense).seed)

    def clear_attention(self, nexus: str = NEXUS) -> None:
        for _ in range(4):
            if self(scsi.TestUnitReady(), nexus=nexus).status == ScsiStatus.GOOD:
                return
            if not self.device._ua.get(nexus):
                return
