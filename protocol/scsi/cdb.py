"""Command descriptor blocks of every command the emulated T10000 knows (SPC-3, SSC-3).

Each CDB is a frozen dataclass declared with its bit layout; ``Read6(65536).build()`` gives
the bytes an initiator sends, ``decode_cdb(cdb)`` gives the target the dataclass back.
Reserved bits are ignored when parsing; the control octet is built as 0 and ignored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar, Union

from construct import BitsInteger, BitStruct, Const, Construct, Default, Flag, Padding

from ..constants import SA_REPORT_SUPPORTED_OPCODES, ScsiOp
from ._record import Record, ScsiFormatError


def _bits(n: int, signed: bool = False) -> Construct:
    return BitsInteger(n, signed=signed)


def _cdb(op: ScsiOp, *fields: Construct) -> Construct:
    return BitStruct("opcode" / Const(int(op), _bits(8)), *fields, "control" / Default(_bits(8), 0))


class Cdb(Record):
    OP: ClassVar[ScsiOp]


@dataclass(frozen=True)
class TestUnitReady(Cdb):
    __test__ = False  # not a pytest class
    OP = ScsiOp.TEST_UNIT_READY
    STRUCT = _cdb(OP, Padding(32))


@dataclass(frozen=True)
class Rewind(Cdb):
    immed: bool = False
    OP = ScsiOp.REWIND
    STRUCT = _cdb(OP, Padding(7), "immed" / Flag, Padding(24))


@dataclass(frozen=True)
class RequestSense(Cdb):
    allocation_length: int = 252
    desc: bool = False
    OP = ScsiOp.REQUEST_SENSE
    STRUCT = _cdb(OP, Padding(7), "desc" / Flag, Padding(16), "allocation_length" / _bits(8))


@dataclass(frozen=True)
class ReadBlockLimits(Cdb):
    OP = ScsiOp.READ_BLOCK_LIMITS
    STRUCT = _cdb(OP, Padding(32))


@dataclass(frozen=True)
class Read6(Cdb):
    """Variable mode: ``transfer_length`` octets, one block. Fixed: that many blocks."""

    transfer_length: int
    fixed: bool = False
    sili: bool = False
    OP = ScsiOp.READ_6
    STRUCT = _cdb(OP, Padding(6), "sili" / Flag, "fixed" / Flag, "transfer_length" / _bits(24))


@dataclass(frozen=True)
class Write6(Cdb):
    transfer_length: int
    fixed: bool = False
    OP = ScsiOp.WRITE_6
    STRUCT = _cdb(OP, Padding(7), "fixed" / Flag, "transfer_length" / _bits(24))


@dataclass(frozen=True)
class WriteFilemarks6(Cdb):
    count: int = 1
    immed: bool = False
    wsmk: bool = False
    OP = ScsiOp.WRITE_FILEMARKS_6
    STRUCT = _cdb(OP, Padding(6), "wsmk" / Flag, "immed" / Flag, "count" / _bits(24))


@dataclass(frozen=True)
class Space6(Cdb):
    """``code`` is a :class:`~protocol.constants.SpaceCode`; ``count`` is signed (negative: toward BOT)."""

    code: int
    count: int = 0
    OP = ScsiOp.SPACE_6
    STRUCT = _cdb(OP, Padding(4), "code" / _bits(4), "count" / _bits(24, True))


@dataclass(frozen=True)
class Inquiry(Cdb):
    allocation_length: int = 96
    evpd: bool = False
    page_code: int = 0
    OP = ScsiOp.INQUIRY
    STRUCT = _cdb(OP, Padding(7), "evpd" / Flag, "page_code" / _bits(8), "allocation_length" / _bits(16))


@dataclass(frozen=True)
class ModeSelect6(Cdb):
    parameter_list_length: int
    pf: bool = True
    sp: bool = False
    OP = ScsiOp.MODE_SELECT_6
    STRUCT = _cdb(OP, Padding(3), "pf" / Flag, Padding(3), "sp" / Flag, Padding(16), "parameter_list_length" / _bits(8))


@dataclass(frozen=True)
class Erase6(Cdb):
    long: bool = True
    immed: bool = False
    OP = ScsiOp.ERASE_6
    STRUCT = _cdb(OP, Padding(6), "immed" / Flag, "long" / Flag, Padding(24))


@dataclass(frozen=True)
class ModeSense6(Cdb):
    """``pc``: 0 current, 1 changeable, 2 default, 3 saved values."""

    page_code: int = 0x3F
    allocation_length: int = 255
    dbd: bool = False
    pc: int = 0
    subpage_code: int = 0
    OP = ScsiOp.MODE_SENSE_6
    STRUCT = _cdb(OP, Padding(4), "dbd" / Flag, Padding(3), "pc" / _bits(2), "page_code" / _bits(6),
                  "subpage_code" / _bits(8), "allocation_length" / _bits(8))


@dataclass(frozen=True)
class LoadUnload(Cdb):
    load: bool = False
    immed: bool = False
    hold: bool = False
    eot: bool = False
    reten: bool = False
    OP = ScsiOp.LOAD_UNLOAD
    STRUCT = _cdb(OP, Padding(7), "immed" / Flag, Padding(20), "hold" / Flag, "eot" / Flag, "reten" / Flag,
                  "load" / Flag)


@dataclass(frozen=True)
class PreventAllowMediumRemoval(Cdb):
    prevent: int = 1
    OP = ScsiOp.PREVENT_ALLOW_MEDIUM_REMOVAL
    STRUCT = _cdb(OP, Padding(30), "prevent" / _bits(2))


@dataclass(frozen=True)
class Locate10(Cdb):
    block_address: int
    bt: bool = False
    cp: bool = False
    immed: bool = False
    partition: int = 0
    OP = ScsiOp.LOCATE_10
    STRUCT = _cdb(OP, Padding(5), "bt" / Flag, "cp" / Flag, "immed" / Flag, Padding(8), "block_address" / _bits(32),
                  Padding(8), "partition" / _bits(8))


@dataclass(frozen=True)
class ReadPosition(Cdb):
    """``service_action``: a :class:`~protocol.constants.ReadPositionForm` (0 short, 6 long)."""

    service_action: int = 0
    allocation_length: int = 0
    OP = ScsiOp.READ_POSITION
    STRUCT = _cdb(OP, Padding(3), "service_action" / _bits(5), Padding(40), "allocation_length" / _bits(16))


@dataclass(frozen=True)
class ReportDensitySupport(Cdb):
    allocation_length: int = 0xFFFF
    media: bool = False
    medium_type: bool = False
    OP = ScsiOp.REPORT_DENSITY_SUPPORT
    STRUCT = _cdb(OP, Padding(6), "medium_type" / Flag, "media" / Flag, Padding(40), "allocation_length" / _bits(16))


@dataclass(frozen=True)
class LogSense(Cdb):
    page_code: int
    allocation_length: int = 0xFFFF
    pc: int = 1  # cumulative values
    ppc: bool = False
    sp: bool = False
    subpage_code: int = 0
    parameter_pointer: int = 0
    OP = ScsiOp.LOG_SENSE
    STRUCT = _cdb(OP, Padding(6), "ppc" / Flag, "sp" / Flag, "pc" / _bits(2), "page_code" / _bits(6),
                  "subpage_code" / _bits(8), Padding(8), "parameter_pointer" / _bits(16),
                  "allocation_length" / _bits(16))


@dataclass(frozen=True)
class ModeSelect10(Cdb):
    parameter_list_length: int
    pf: bool = True
    sp: bool = False
    OP = ScsiOp.MODE_SELECT_10
    STRUCT = _cdb(OP, Padding(3), "pf" / Flag, Padding(3), "sp" / Flag, Padding(40), "parameter_list_length" / _bits(16))


@dataclass(frozen=True)
class ModeSense10(Cdb):
    page_code: int = 0x3F
    allocation_length: int = 0xFFFF
    dbd: bool = False
    llbaa: bool = False
    pc: int = 0
    subpage_code: int = 0
    OP = ScsiOp.MODE_SENSE_10
    STRUCT = _cdb(OP, Padding(3), "llbaa" / Flag, "dbd" / Flag, Padding(3), "pc" / _bits(2), "page_code" / _bits(6),
                  "subpage_code" / _bits(8), Padding(24), "allocation_length" / _bits(16))


@dataclass(frozen=True)
class Space16(Cdb):
    code: int
    count: int = 0
    parameter_length: int = 0
    OP = ScsiOp.SPACE_16
    STRUCT = _cdb(OP, Padding(4), "code" / _bits(4), Padding(16), "count" / _bits(64, True),
                  "parameter_length" / _bits(16), Padding(8))


@dataclass(frozen=True)
class Locate16(Cdb):
    """``dest_type`` 0: ``logical_identifier`` is a logical object (block) number; 1: a file number."""

    logical_identifier: int
    dest_type: int = 0
    cp: bool = False
    immed: bool = False
    partition: int = 0
    OP = ScsiOp.LOCATE_16
    STRUCT = _cdb(OP, Padding(2), "dest_type" / _bits(3), Padding(1), "cp" / Flag, "immed" / Flag, Padding(6),
                  "bam" / Default(_bits(2), 0), "partition" / _bits(8), "logical_identifier" / _bits(64), Padding(24))


@dataclass(frozen=True)
class ReportLuns(Cdb):
    allocation_length: int = 4096
    select_report: int = 0
    OP = ScsiOp.REPORT_LUNS
    STRUCT = _cdb(OP, Padding(8), "select_report" / _bits(8), Padding(24), "allocation_length" / _bits(32), Padding(8))


@dataclass(frozen=True)
class SecurityProtocolIn(Cdb):
    security_protocol: int
    protocol_specific: int
    allocation_length: int = 0x2000
    inc_512: bool = False
    OP = ScsiOp.SECURITY_PROTOCOL_IN
    STRUCT = _cdb(OP, "security_protocol" / _bits(8), "protocol_specific" / _bits(16), "inc_512" / Flag, Padding(15),
                  "allocation_length" / _bits(32), Padding(8))


@dataclass(frozen=True)
class SecurityProtocolOut(Cdb):
    security_protocol: int
    protocol_specific: int
    transfer_length: int
    inc_512: bool = False
    OP = ScsiOp.SECURITY_PROTOCOL_OUT
    STRUCT = _cdb(OP, "security_protocol" / _bits(8), "protocol_specific" / _bits(16), "inc_512" / Flag, Padding(15),
                  "transfer_length" / _bits(32), Padding(8))


@dataclass(frozen=True)
class ReportSupportedOperationCodes(Cdb):
    """MAINTENANCE IN / REPORT SUPPORTED OPERATION CODES. ``reporting_options`` 0: all commands;
    1: one opcode without service action; 2: one opcode and service action."""

    allocation_length: int = 0x2000
    reporting_options: int = 0
    requested_opcode: int = 0
    requested_service_action: int = 0
    rctd: bool = False
    service_action: int = SA_REPORT_SUPPORTED_OPCODES
    OP = ScsiOp.MAINTENANCE_IN
    STRUCT = _cdb(OP, Padding(3), "service_action" / _bits(5), "rctd" / Flag, Padding(4), "reporting_options" / _bits(3),
                  "requested_opcode" / _bits(8), "requested_service_action" / _bits(16),
                  "allocation_length" / _bits(32), Padding(8))


AnyCdb = Union[
    TestUnitReady, Rewind, RequestSense, ReadBlockLimits, Read6, Write6, WriteFilemarks6, Space6, Inquiry,
    ModeSelect6, Erase6, ModeSense6, LoadUnload, PreventAllowMediumRemoval, Locate10, ReadPosition,
    ReportDensitySupport, LogSense, ModeSelect10, ModeSense10, Space16, Locate16, ReportLuns, SecurityProtocolIn,
    SecurityProtocolOut, ReportSupportedOperationCodes,
]

#: Every CDB class by its operation code.
CDB_CLASSES: dict[int, type[Cdb]] = {cls.OP: cls for cls in AnyCdb.__args__}  # type: ignore[attr-defined]
#: CDB length by operation code (what REPORT SUPPORTED OPERATION CODES reports).
CDB_LENGTHS: dict[int, int] = {op: cls.size() for op, cls in CDB_CLASSES.items()}


class UnknownOpcode(ScsiFormatError):
    def __init__(self, opcode: int) -> None:
        super().__init__(f"operation code {opcode:02x}h is not a command this device knows")
        self.opcode = opcode


def decode_cdb(cdb: bytes | bytearray | memoryview) -> Cdb:
    """The dataclass of a CDB; :class:`UnknownOpcode` for an opcode not in the catalogue,
    :class:`ScsiFormatError` for one too short. Octets past the CDB's length are ignored
    (iSCSI always carries 16). Decoded CDBs are frozen and cached: a stream of READ(6) or
    WRITE(6) of one length is parsed once (bit-level parsing costs ~60 us a CDB)."""
    return _decode(bytes(cdb))


@functools.lru_cache(maxsize=512)
def _decode(cdb: bytes) -> Cdb:
    if not cdb:
        raise ScsiFormatError("an empty CDB")
    cls = CDB_CLASSES.get(cdb[0])
    if cls is None:
        raise UnknownOpcode(cdb[0])
    length = CDB_LENGTHS[cdb[0]]
    if len(cdb) < length:
        raise ScsiFormatError(f"CDB of {cls.__name__} is {length} octets, got {len(cdb)}")
    return cls.parse(bytes(cdb[:length]))
