"""The KMS console: the seed's HTTPS GUI over the KMS station's library, with the library drawn live.

It imports the station (kms_client) and protocol/, never the daemons: the console calls the
same functions as the CLI, so every rule has one home. ``t10k kms serve`` runs it. The web stack
is imported only when the console is made (``make_app``), so every other ``t10k`` command, the
daemons included, starts without it.
"""

from __future__ import annotations

from typing import Any

from .errors import ConsoleError

__all__ = ["make_app", "ConsoleError"]


def __getattr__(name: str) -> Any:
    if name == "make_app":
        from .app import make_app

        return make_app
    raise AttributeError(name)
