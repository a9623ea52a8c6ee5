"""The lab's errors, in one place (and light: the CLI catches them without loading the daemons)."""

from __future__ import annotations


class AddressError(ValueError):
    """The lab's addresses are taken or malformed; the message names ip:port and who holds it."""


class LabTimeout(Exception):
    """The lab did not reach the awaited state in time; the message shows where it got."""


class NetLabError(Exception):
    """The lab cannot be brought up as asked; the message says why and what to do."""


class ReplayError(ValueError):
    """Replay cannot go on (nothing answers where the requests go)."""


class TgtError(Exception):
    """tgt cannot be started or configured; the message says why and what to do."""


class TopologyError(ValueError):
    """The topology file is wrong; the message names the place."""
