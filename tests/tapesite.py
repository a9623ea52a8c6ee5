"""Tapes on the in-memory LAN: armed drives with TapeSessions over a real cartridge library."""

from __future__ import annotations

import inspect
from pathlib import Path

from drive_daemon.cartridge import Cartridge, CorruptRecord
from drive_daemon.drive import Drive, Output
from drive_daemon.tape import TapeCheck, TapeSession
from protocol.sense import Condition, SenseProfile, sense_for
from tests.site import Site


class Deck:
    """One drive's tape session, delivering its outputs (token reports) to the LAN.

    ``deck("write", data)`` (or ``deck("read_block", max_length=n)``) calls ``TapeSession.write`` with the LAN's time and a fresh
    Output (given to the methods that take ``now``/``out``), and returns what the method
    returns, or the :class:`TapeCheck` it raised (a corrupt record is MEDIUM_CORRUPT, as the
    SSC device reports it)."""

    def __init__(self, site: Site, drive_ip: str, library: Path, profile: SenseProfile = SenseProfile.T10000) -> None:
        self.site, self.ip = site, drive_ip
        drive: Drive = site.lan.drives[drive_ip]
        self.session = TapeSession(drive, library, profile)

    def __call__(self, operation: str, *args: object, **kwargs: object) -> object:
        method = getattr(self.session, operation)
        out = Output()
        kwargs.update({name: value for name, value in (("now", self.site.lan.now), ("out", out))
                       if name in inspect.signature(method).parameters})
        try:
            result = method(*args, **kwargs)
        except TapeCheck as tc:
            result = tc
        except CorruptRecord as exc:
            result = TapeCheck(Condition.MEDIUM_CORRUPT, str(exc))
        self.site.lan._drive_output(self.ip, out)
        self.site.lan.run()
        return result

    def sense(self, operation: str, *args: object, **kwargs: object) -> str:
        """The seed's notation for what the host saw: 'none' or SK/ASCASCQ/FSC."""
        return self.text(self(operation, *args, **kwargs))

    def text(self, result: object) -> str:
        """'none', or the seed's SK/ASCASCQ/FSC of a TapeCheck in this deck's sense profile."""
        if isinstance(result, TapeCheck):
            return str(sense_for(result.condition, self.session.profile))
        return "none"

    def write_file(self, *blocks: bytes) -> None:
        for b in blocks:
            assert self.sense("write", b) == "none"
        assert self.sense("write_filemarks", 1) == "none"


def new_tape(library: Path, volser: str) -> str:
    Cartridge.create(library, volser)
    return volser
