"""The drive's SCSI side: a sans-I/O SSC-3 sequential-access device over its TapeSession."""

from __future__ import annotations

from .device import SscDevice
from .identity import Identity
from .outcome import ScsiOutcome

__all__ = ["SscDevice", "ScsiOutcome", "Identity"]
