"""Data-in and parameter-list layouts (SPC-3, SSC-3): INQUIRY and VPD pages, mode data,
READ BLOCK LIMITS, READ POSITION, REPORT DENSITY SUPPORT, LOG SENSE, REPORT LUNS and
REPORT SUPPORTED OPERATION CODES. Each is declared once; the device builds, an initiator parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from construct import (
    Adapter,
    Array,
    BitsInteger,
    BitStruct,
    Bytes,
    Const,
    Default,
    Flag,
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int24ub,
    Int32ub,
    Int64ub,
    Padding,
    Prefixed,
    Struct,
    this,
)

from ._record import Record, ScsiFormatError


class _Ascii(Adapter):  # type: ignore[misc]
    """Fixed-width ASCII, space padded (SPC's left-aligned text fields)."""

    def __init__(self, n: int) -> None:
        super().__init__(Bytes(n))
        self.n = n

    def _decode(self, obj: bytes, context: Any, path: Any) -> str:
        return obj.decode("ascii", "replace").rstrip(" \0")

    def _encode(self, obj: str, context: Any, path: Any) -> bytes:
        return obj.encode("ascii")[: self.n].ljust(self.n, b" ")


def _bits(n: int) -> BitsInteger:
    return BitsInteger(n)


# --- INQUIRY -------------------------------------------------------------------

INQUIRY_LENGTH = 96
#: Octets 54 and 55 of standard INQUIRY data (vendor specific), as mhVTL's T10000 sets them.
INQUIRY_DPKM_OCTET, INQUIRY_DPKM_BIT = 54, 0x04  # key management by SECURITY PROTOCOL IN/OUT
INQUIRY_ENCRYPT_OCTET, INQUIRY_ENCRYPT_BIT = 55, 0x10  # an encrypting drive


@dataclass(frozen=True)
class InquiryData(Record):
    """Standard INQUIRY data, 96 octets. ``vendor_specific`` is octets 36-55."""

    vendor: str
    product: str
    revision: str
    peripheral: int = 0x01  # qualifier 0, sequential-access device
    rmb: int = 0x80  # removable medium
    version: int = 0x05  # SPC-3
    response_format: int = 0x02
    flags: int = 0x00  # octets 5-7 (no ACA, no queuing claims)
    vendor_specific: bytes = bytes(20)
    version_descriptors: tuple[int, ...] = (0x0060, 0x0300, 0x0400, 0x0960, 0, 0, 0, 0)  # SAM-3 SPC-3 SSC-3 iSCSI
    STRUCT = Struct(
        "peripheral" / Int8ub, "rmb" / Int8ub, "version" / Int8ub, "response_format" / Int8ub,
        "additional_length" / Default(Int8ub, INQUIRY_LENGTH - 5), "flags" / Int24ub,
        "vendor" / _Ascii(8), "product" / _Ascii(16), "revision" / _Ascii(4), "vendor_specific" / Bytes(20),
        Padding(2), "version_descriptors" / Array(8, Int16ub), Padding(22),
    )

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> InquiryData:
        """Standard INQUIRY data of any length from 36 octets (the rest zero-filled)."""
        raw = bytes(data)
        if len(raw) < 36:
            raise ScsiFormatError(f"standard INQUIRY data is at least 36 octets, got {len(raw)}")
        d = super().parse(raw[:INQUIRY_LENGTH].ljust(INQUIRY_LENGTH, b"\0"))
        return InquiryData(**{**d.__dict__, "version_descriptors": tuple(d.version_descriptors)})


# --- VPD pages (INQUIRY with EVPD) -----------------------------------------------

VPD_SUPPORTED_PAGES = 0x00
VPD_UNIT_SERIAL_NUMBER = 0x80
VPD_DEVICE_IDENTIFICATION = 0x83
VPD_SEQUENTIAL_ACCESS_CAPABILITIES = 0xB0

VPD_PAGE = Struct("peripheral" / Int8ub, "page_code" / Int8ub, "payload" / Prefixed(Int16ub, GreedyBytes))

#: Device identification (83h) designation descriptor.
DESIGNATOR = Struct(
    "id" / BitStruct("protocol_identifier" / _bits(4), "code_set" / _bits(4), "piv" / Flag, Padding(1),
                     "association" / _bits(2), "designator_type" / _bits(4)),
    Padding(1),
    "designator" / Prefixed(Int8ub, GreedyBytes),
)
CODE_SET_BINARY, CODE_SET_ASCII = 1, 2
DESIGNATOR_T10_VENDOR_ID, DESIGNATOR_EUI64 = 1, 2


def vpd_page(page_code: int, payload: bytes, peripheral: int = 0x01) -> bytes:
    return VPD_PAGE.build(dict(peripheral=peripheral, page_code=page_code, payload=payload))


def parse_vpd_page(data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(page code, payload) of a VPD page."""
    raw = bytes(data)
    if len(raw) < 4 or len(raw) < 4 + int.from_bytes(raw[2:4], "big"):
        raise ScsiFormatError(f"truncated VPD page: {raw[:8].hex()}")
    c = VPD_PAGE.parse(raw[: 4 + int.from_bytes(raw[2:4], "big")])
    return c.page_code, c.payload


def designator(code_set: int, designator_type: int, value: bytes, association: int = 0) -> bytes:
    return DESIGNATOR.build(dict(id=dict(protocol_identifier=0, code_set=code_set, piv=False, association=association,
                                         designator_type=designator_type), designator=value))


def parse_designators(payload: bytes) -> list[tuple[int, bytes]]:
    """[(designator type, value)] of a device identification page's payload."""
    return [(d.id.designator_type, d.designator) for d in GreedyRange(DESIGNATOR).parse(payload)]


# --- mode parameters ---------------------------------------------------------------

MODE_PAGE_DATA_COMPRESSION = 0x0F
MODE_PAGE_DEVICE_CONFIGURATION = 0x10
MODE_PAGE_ALL = 0x3F
#: Mode parameter header, device-specific octet.
WRITE_PROTECT_BIT = 0x80
BUFFERED_MODE_SHIFT = 4

MODE_HEADER_6 = Struct("mode_data_length" / Int8ub, "medium_type" / Int8ub, "device_specific" / Int8ub,
                       "block_descriptor_length" / Int8ub)
MODE_HEADER_10 = Struct("mode_data_length" / Int16ub, "medium_type" / Int8ub, "device_specific" / Int8ub,
                        "longlba" / Default(Int8ub, 0), Padding(1), "block_descriptor_length" / Int16ub)
BLOCK_DESCRIPTOR = Struct("density_code" / Int8ub, "number_of_blocks" / Int24ub, Padding(1),
                          "block_length" / Int24ub)
BLOCK_DESCRIPTOR_LENGTH = 8

#: Data compression page (0Fh): DCE (octet 2 bit 7), DCC (bit 6), DDE (octet 3 bit 7).
PAGE_DATA_COMPRESSION = Struct(
    "page_code" / Const(MODE_PAGE_DATA_COMPRESSION, Int8ub), "page_length" / Const(14, Int8ub),
    "dce_dcc" / Int8ub, "dde_red" / Int8ub, "compression_algorithm" / Int32ub,
    "decompression_algorithm" / Int32ub, Padding(4),
)
#: Device configuration page (10h). Octet 8: DBR BIS RSMK AVC SOCF(2) RBO REW.
PAGE_DEVICE_CONFIGURATION = Struct(
    "page_code" / Const(MODE_PAGE_DEVICE_CONFIGURATION, Int8ub), "page_length" / Const(14, Int8ub),
    "active_format" / Int8ub, "active_partition" / Int8ub, "write_buffer_full_ratio" / Int8ub,
    "read_buffer_empty_ratio" / Int8ub, "write_delay_time" / Int16ub, "flags8" / Int8ub, "gap_size" / Int8ub,
    "flags10" / Int8ub, "buffer_size_at_early_warning" / Int24ub, "select_compression_algorithm" / Int8ub,
    "flags15" / Int8ub,
)
DEVICE_CONFIGURATION_BIS = 0x40  # block identifiers supported
DEVICE_CONFIGURATION_SEW = 0x08  # synchronize at early warning
MODE_PAGE_HEADER = Struct("page_code" / Int8ub, "page_length" / Int8ub)


@dataclass(frozen=True)
class ModeParameters:
    """Mode parameter header, at most one block descriptor, and the pages (code -> whole page octets)."""

    medium_type: int = 0
    write_protect: bool = False
    buffered_mode: int = 1
    density_code: int | None = None  # None: no block descriptor
    block_length: int = 0  # 0: variable-length blocks
    number_of_blocks: int = 0
    pages: dict[int, bytes] = field(default_factory=dict)

    def build(self, ten: bool = False) -> bytes:
        bd = b""
        if self.density_code is not None:
            bd = BLOCK_DESCRIPTOR.build(dict(density_code=self.density_code, number_of_blocks=self.number_of_blocks,
                                             block_length=self.block_length))
        pages = b"".join(self.pages.values())
        dsp = (WRITE_PROTECT_BIT if self.write_protect else 0) | (self.buffered_mode & 7) << BUFFERED_MODE_SHIFT
        if ten:
            head = MODE_HEADER_10.build(dict(mode_data_length=6 + len(bd) + len(pages), medium_type=self.medium_type,
                                             device_specific=dsp, block_descriptor_length=len(bd)))
        else:
            head = MODE_HEADER_6.build(dict(mode_data_length=3 + len(bd) + len(pages), medium_type=self.medium_type,
                                            device_specific=dsp, block_descriptor_length=len(bd)))
        return head + bd + pages

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview, ten: bool = False) -> ModeParameters:
        """Mode data (MODE SENSE) or a mode parameter list (MODE SELECT)."""
        raw = bytes(data)
        header, hlen = (MODE_HEADER_10, 8) if ten else (MODE_HEADER_6, 4)
        if len(raw) < hlen:
            raise ScsiFormatError(f"mode parameter header is {hlen} octets, got {len(raw)}")
        h = header.parse(raw[:hlen])
        bd_end = hlen + h.block_descriptor_length
        if bd_end > len(raw) or h.block_descriptor_length not in (0, BLOCK_DESCRIPTOR_LENGTH):
            raise ScsiFormatError(f"block descriptor length {h.block_descriptor_length} does not fit the mode data")
        density, block_length, blocks = None, 0, 0
        if h.block_descriptor_length:
            bd = BLOCK_DESCRIPTOR.parse(raw[hlen:bd_end])
            density, block_length, blocks = bd.density_code, bd.block_length, bd.number_of_blocks
        pages: dict[int, bytes] = {}
        at = bd_end
        while at + 2 <= len(raw):
            end = at + 2 + raw[at + 1]
            if end > len(raw):
                raise ScsiFormatError(f"mode page {raw[at] & 0x3F:02x}h overruns the mode data")
            pages[raw[at] & 0x3F] = raw[at:end]
            at = end
        return cls(h.medium_type, bool(h.device_specific & WRITE_PROTECT_BIT),
                   (h.device_specific >> BUFFERED_MODE_SHIFT) & 7, density, block_length, blocks, pages)


# --- READ BLOCK LIMITS, READ POSITION --------------------------------------------


@dataclass(frozen=True)
class BlockLimits(Record):
    max_block_length: int
    min_block_length: int = 1
    granularity: int = 0
    STRUCT = Struct("granularity" / Int8ub, "max_block_length" / Int24ub, "min_block_length" / Int16ub)


@dataclass(frozen=True)
class ShortPosition(Record):
    """READ POSITION, short form (service action 00h, 20 octets). Block numbers count
    logical objects: blocks and filemarks."""

    first_block: int
    last_block: int
    bop: bool = False
    eop: bool = False
    bpu: bool = False  # block position unknown
    partition: int = 0
    blocks_in_buffer: int = 0
    bytes_in_buffer: int = 0
    bcu: bool = False
    bycu: bool = False
    perr: bool = False
    STRUCT = BitStruct(
        "bop" / Flag, "eop" / Flag, "bcu" / Flag, "bycu" / Flag, Padding(1), "bpu" / Flag, "perr" / Flag, Padding(1),
        "partition" / _bits(8), Padding(16), "first_block" / _bits(32), "last_block" / _bits(32), Padding(8),
        "blocks_in_buffer" / _bits(24), "bytes_in_buffer" / _bits(32),
    )


@dataclass(frozen=True)
class LongPosition(Record):
    """READ POSITION, long form (service action 06h, 32 octets)."""

    logical_object_number: int
    logical_file_identifier: int
    bop: bool = False
    eop: bool = False
    mpu: bool = False
    lonu: bool = False
    partition: int = 0
    logical_set_identifier: int = 0
    STRUCT = BitStruct(
        "bop" / Flag, "eop" / Flag, Padding(2), "mpu" / Flag, "lonu" / Flag, Padding(2), Padding(24),
        "partition" / _bits(32), "logical_object_number" / _bits(64), "logical_file_identifier" / _bits(64),
        "logical_set_identifier" / _bits(64),
    )


# --- REPORT DENSITY SUPPORT -----------------------------------------------------

DENSITY_WRTOK, DENSITY_DUP, DENSITY_DEFLT = 0x80, 0x40, 0x20


@dataclass(frozen=True)
class DensityDescriptor(Record):
    primary_density_code: int
    secondary_density_code: int
    flags: int  # WRTOK DUP DEFLT
    bits_per_mm: int
    media_width: int  # tenths of a millimetre
    tracks: int
    capacity: int  # megabytes
    assigning_organization: str
    density_name: str
    description: str
    STRUCT = Struct(
        "primary_density_code" / Int8ub, "secondary_density_code" / Int8ub, "flags" / Int8ub, Padding(2),
        "bits_per_mm" / Int24ub, "media_width" / Int16ub, "tracks" / Int16ub, "capacity" / Int32ub,
        "assigning_organization" / _Ascii(8), "density_name" / _Ascii(8), "description" / _Ascii(20),
    )


def density_support(descriptors: list[DensityDescriptor]) -> bytes:
    body = b"".join(d.build() for d in descriptors)
    return (len(body) + 2).to_bytes(2, "big") + bytes(2) + body


def parse_density_support(data: bytes | bytearray | memoryview) -> list[DensityDescriptor]:
    raw = bytes(data)
    size = DensityDescriptor.size()
    end = min(len(raw), 2 + int.from_bytes(raw[:2], "big")) if len(raw) >= 4 else 0
    return [DensityDescriptor.parse(raw[i:i + size]) for i in range(4, end - size + 1, size)]


# --- LOG SENSE ------------------------------------------------------------------

LOG_PAGE_SUPPORTED = 0x00
LOG_PAGE_TAPE_ALERT = 0x2E
TAPE_ALERT_FLAGS = 64
#: TapeAlert flags this drive raises (SSC-3 Annex A numbering).
TAPE_ALERT_READ_FAILURE = 0x05
TAPE_ALERT_WRITE_FAILURE = 0x06
TAPE_ALERT_MEDIA = 0x04

LOG_PAGE = Struct("page_code" / Int8ub, "subpage_code" / Int8ub, "parameters" / Prefixed(Int16ub, GreedyBytes))
LOG_PARAMETER = Struct("code" / Int16ub, "control" / Int8ub, "value" / Prefixed(Int8ub, GreedyBytes))
#: Control octet of a TapeAlert parameter: binary list parameter (LBIN, LP).
TAPE_ALERT_CONTROL = 0x03


def log_page(page_code: int, parameters: bytes) -> bytes:
    return LOG_PAGE.build(dict(page_code=page_code, subpage_code=0, parameters=parameters))


def tape_alert_page(active: set[int]) -> bytes:
    return log_page(LOG_PAGE_TAPE_ALERT, b"".join(
        LOG_PARAMETER.build(dict(code=flag, control=TAPE_ALERT_CONTROL, value=bytes([flag in active])))
        for flag in range(1, TAPE_ALERT_FLAGS + 1)))


def parse_log_page(data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """(page code, parameter octets) of a log page."""
    c = LOG_PAGE.parse(bytes(data))
    return c.page_code & 0x3F, c.parameters


def parse_tape_alert(parameters: bytes) -> set[int]:
    """The TapeAlert flags set in a 2Eh page's parameters."""
    return {p.code for p in GreedyRange(LOG_PARAMETER).parse(parameters) if any(p.value)}


# --- REPORT LUNS, REPORT SUPPORTED OPERATION CODES ---------------------------------

REPORT_LUNS_DATA = Struct("length" / Int32ub, Padding(4), "luns" / Array(this.length // 8, Int64ub))


def report_luns(luns: list[int]) -> bytes:
    return REPORT_LUNS_DATA.build(dict(length=8 * len(luns), luns=luns))


def parse_report_luns(data: bytes | bytearray | memoryview) -> list[int]:
    raw = bytes(data)
    n = min(int.from_bytes(raw[:4], "big"), max(0, len(raw) - 8)) // 8 if len(raw) >= 8 else 0
    return list(REPORT_LUNS_DATA.parse((8 * n).to_bytes(4, "big") + raw[4:8 + 8 * n]).luns)


#: One command descriptor of REPORT SUPPORTED OPERATION CODES, all commands (8 octets).
OPCODE_DESCRIPTOR = Struct("opcode" / Int8ub, Padding(1), "service_action" / Int16ub, Padding(1),
                           "flags" / Int8ub, "cdb_length" / Int16ub)
OPCODE_SERVACTV = 0x01
#: The one-command form: support 3 = supported as the standard says, 1 = not supported.
ONE_COMMAND = Struct(Padding(1), "support" / Int8ub, "usage" / Prefixed(Int16ub, GreedyBytes))
SUPPORT_NOT_SUPPORTED, SUPPORT_STANDARD = 1, 3


def all_commands(descriptors: list[tuple[int, int | None, int]]) -> bytes:
    """(opcode, service action or None, CDB length) for each command."""
    body = b"".join(OPCODE_DESCRIPTOR.build(dict(opcode=op, service_action=sa or 0,
                                                 flags=OPCODE_SERVACTV if sa is not None else 0, cdb_length=n))
                    for op, sa, n in descriptors)
    return len(body).to_bytes(4, "big") + body


def parse_all_commands(data: bytes | bytearray | memoryview) -> list[tuple[int, int | None, int]]:
    raw = bytes(data)
    end = min(len(raw), 4 + int.from_bytes(raw[:4], "big"))
    out = []
    for i in range(4, end - 7, 8):
        d = OPCODE_DESCRIPTOR.parse(raw[i:i + 8])
        out.append((d.opcode, d.service_action if d.flags & OPCODE_SERVACTV else None, d.cdb_length))
    return out


def one_command(supported: bool, usage: bytes = b"") -> bytes:
    return ONE_COMMAND.build(dict(support=SUPPORT_STANDARD if supported else SUPPORT_NOT_SUPPORTED, usage=usage))
