"""The one error of lab/guest/: the guest cannot be built or run; the message says what to do."""

from __future__ import annotations


class GuestError(Exception):
    """The guest image cannot be built, or the guest cannot be booted or finish in time."""
