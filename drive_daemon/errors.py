"""Errors of the drive daemon."""

from __future__ import annotations


class DriveDaemonError(Exception):
    """Root of the drive daemon's errors."""


class ManufacturingFileError(DriveDaemonError):
    """The manufacturing file (CSN and PCkey) is missing, malformed or lacks the drive asked for."""


class NvramError(DriveDaemonError):
    """The drive's non-volatile memory file cannot be read; the message says how to recover."""


class BindError(DriveDaemonError):
    """An address the drive must bind is taken or not local; the message names ip:port and its holder."""
