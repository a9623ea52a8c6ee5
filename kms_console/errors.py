"""Errors of the console, each saying what to do instead."""

from __future__ import annotations

from kms_client.errors import KmsError


class ConsoleError(KmsError):
    """The console cannot start or serve (no logins in the store, no certificate, a bad listen address)."""


class CsrfRefused(ConsoleError):
    """A form came without this session's anti-forgery token, or from another site."""
