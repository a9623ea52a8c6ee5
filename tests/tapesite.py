"""Tapes on the in-memory LAN: armed drives with TapeSessions over a real cartridge library."""

from __future__ import annotations

from pathlib import Path

import protocol as p
from drive_daemon.cartridge import Cartridge
from drive_daemon.drive import Drive
from drive_daemon.tape import TapeSession
from protocol.sense import SenseProfile
from tests.site import Site


class Deck:
    """One drive's tape session, delivering its outputs (token reports) to the LAN."""

    def __init__(self, site: Site, drive_ip: str, library: Path, profile: SenseProfile = SenseProfile.T10000) -> None:
        self.site, self.ip = site, drive_ip
        drive: Drive = site.lan.drives[drive_ip]
        self.session = TapeSession(drive, library, profile)

    def __call__(self, message: p.Message) -> p.Message:
        reply, out = self.session.handle(message, self.site.lan.now)
        self.site.lan._drive_output(self.ip, out)
        self.site.lan.run()
        return reply

    def sense(self, message: p.Message) -> str:
        """The seed's notation for what the host saw: 'none' or SK/ASCASCQ/FSC."""
        reply = self(message)
        if isinstance(reply, p.HostResult) and reply.status != 0:
            return str(reply.sense)
        return "none"

    def write_file(self, *blocks: bytes) -> None:
        for b in blocks:
            assert self.sense(p.WriteBlock(b)) == "none"
        assert self.sense(p.WriteFilemarks(1)) == "none"


def new_tape(library: Path, volser: str) -> str:
    Cartridge.create(library, volser)
    return volser
