"""SCSI for a sequential-access device, declared once and shared by our target and initiator.

- :mod:`.cdb`: every CDB as a frozen dataclass (``Read6(65536).build()``, ``decode_cdb(bytes)``);
- :mod:`.sense_data`: fixed-format sense with the FSC (octets 18-19) and key ID (20-27);
- :mod:`.data`: INQUIRY/VPD, mode data and pages, READ BLOCK LIMITS, READ POSITION, REPORT
  DENSITY SUPPORT, LOG SENSE, REPORT LUNS, REPORT SUPPORTED OPERATION CODES;
- :mod:`.security`: SECURITY PROTOCOL IN pages (protocols 00h and 20h).

Numbers (opcodes, ASC/ASCQ, status) live in :mod:`protocol.constants`. docs/SCSI.md maps it all to bytes.
"""

from __future__ import annotations

from . import data, security
from ._record import Record, ScsiFormatError
from .cdb import (
    CDB_CLASSES,
    CDB_LENGTHS,
    AnyCdb,
    Cdb,
    Erase6,
    Inquiry,
    LoadUnload,
    Locate10,
    Locate16,
    LogSense,
    ModeSelect6,
    ModeSelect10,
    ModeSense6,
    ModeSense10,
    PreventAllowMediumRemoval,
    Read6,
    ReadBlockLimits,
    ReadPosition,
    ReportDensitySupport,
    ReportLuns,
    ReportSupportedOperationCodes,
    RequestSense,
    Rewind,
    SecurityProtocolIn,
    SecurityProtocolOut,
    Space6,
    Space16,
    TestUnitReady,
    UnknownOpcode,
    Write6,
    WriteFilemarks6,
    decode_cdb,
)
from .data import BlockLimits, DensityDescriptor, InquiryData, LongPosition, ModeParameters, ShortPosition
from .security import DataEncryptionStatus, NextBlockEncryptionStatus
from .sense_data import FSC_OFFSET, KEY_ID_OFFSET, NO_SENSE, SENSE_LENGTH, SenseData

__all__ = [
    "data", "security", "Record", "ScsiFormatError",
    "CDB_CLASSES", "CDB_LENGTHS", "AnyCdb", "Cdb", "Erase6", "Inquiry", "LoadUnload", "Locate10", "Locate16",
    "LogSense", "ModeSelect6", "ModeSelect10", "ModeSense6", "ModeSense10", "PreventAllowMediumRemoval", "Read6",
    "ReadBlockLimits", "ReadPosition", "ReportDensitySupport", "ReportLuns", "ReportSupportedOperationCodes",
    "RequestSense", "Rewind", "SecurityProtocolIn", "SecurityProtocolOut", "Space6", "Space16", "TestUnitReady",
    "UnknownOpcode", "Write6", "WriteFilemarks6", "decode_cdb",
    "BlockLimits", "DensityDescriptor", "InquiryData", "LongPosition", "ModeParameters", "ShortPosition",
    "DataEncryptionStatus", "NextBlockEncryptionStatus",
    "FSC_OFFSET", "KEY_ID_OFFSET", "NO_SENSE", "SENSE_LENGTH", "SenseData",
]
