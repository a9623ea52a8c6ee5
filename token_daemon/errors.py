"""Errors of the token daemon."""

from __future__ import annotations


class TokenDaemonError(Exception):
    """Root of the token daemon's errors."""


class MemoryImageError(TokenDaemonError):
    """The token's non-volatile memory image cannot be read; the message says how to recover."""


class ConfigError(TokenDaemonError):
    """A bad setting (address, secret file) given to the daemon."""


class BindError(TokenDaemonError):
    """An address the token must bind is taken or not local; the message names ip:port and its holder."""
