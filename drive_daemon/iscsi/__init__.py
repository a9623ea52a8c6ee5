"""A drive's iSCSI target: the sans-I/O connection (target.py, login.py) and its asyncio portal."""

from __future__ import annotations

from .config import IscsiConfig
from .listener import IscsiListener
from .lun import ScsiLun, ScsiOutcome
from .portal import IscsiPortal, Tap
from .target import TargetConnection

__all__ = ["IscsiConfig", "IscsiPortal", "IscsiListener", "Tap", "ScsiLun", "ScsiOutcome", "TargetConnection"]
