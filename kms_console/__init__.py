"""The KMS console: the seed's HTTPS GUI over the KMS station's library, with the library drawn live.

It imports the station (kms_client) and protocol/, never the daemons: the console calls the
same functions as the CLI, so every rule has one home. ``t10k kms serve`` runs it.
"""

from __future__ import annotations

from .app import make_app
from .errors import ConsoleError

__all__ = ["make_app", "ConsoleError"]
