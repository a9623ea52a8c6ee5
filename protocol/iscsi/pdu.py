"""The iSCSI PDU catalogue (RFC 7143 section 11): one frozen dataclass per opcode.

Each class's 48-octet Basic Header Segment is declared once as a construct ``Struct``
(``_BHS``); the dataclass fields carry the same names (a test checks they agree). Names
starting with ``_`` are reserved or bit groups: a bit group's inner names are fields of
the dataclass too. ``data`` is the data segment; ``ahs`` the additional header segments
(only a SCSI Command may have them). Digests and padding are framing's business.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from construct import (
    Adapter,
    Bytes,
    Const,
    ConstructError,
    Int8ub,
    Int16ub,
    Int24ub,
    Int32ub,
    Int64ub,
    Padding,
    Struct,
)

from .constants import BHS_SIZE, CDB_FIELD_SIZE, RESERVED_TAG, Opcode
from .errors import IscsiDecodeError, IscsiLocalError, IscsiReason


class Bits8(Adapter):  # type: ignore[misc]
    """One octet of bit fields, most significant first: (name, width); name None is reserved,
    "1" a bit always set. Flags (width 1) are bools. (Byte-level: BitStruct costs ~10x more.)"""

    def __init__(self, *fields: tuple[str | None, int]) -> None:
        super().__init__(Int8ub)
        layout, shift = [], 8
        for name, width in fields:
            shift -= width
            layout.append((name, shift, (1 << width) - 1, width == 1))
        assert shift == 0, fields
        self.layout = tuple(layout)
        self.names = tuple(n for n, *_ in layout if n and n != "1")
        self.ones = sum(1 << sh for n, sh, _, _ in layout if n == "1")

    def _decode(self, obj: int, context: Any, path: Any) -> dict[str, Any]:
        return {n: (bool(obj >> sh & 1) if flag else obj >> sh & m) for n, sh, m, flag in self.layout
                if n and n != "1"}

    def _encode(self, obj: dict[str, Any], context: Any, path: Any) -> int:
        value = self.ones
        for name, shift, mask, _ in self.layout:
            if name and name != "1":
                value |= (int(obj[name]) & mask) << shift
        return value


def _head(*, immediate: bool) -> Any:
    """Octet 0: reserved bit, the I bit (initiator PDUs only), the opcode."""
    return "_op" / Bits8((None, 1), ("immediate" if immediate else None, 1), ("_opcode", 6))


_LENGTHS = ("_ahs_words" / Int8ub, "_data_length" / Int24ub)
_FINAL = "_f" / Bits8(("final", 1), (None, 7))
_FINAL_ONLY = "_f" / Bits8(("1", 1), (None, 7))
_LOGIN_FLAGS = "_f" / Bits8(("transit", 1), ("cont", 1), (None, 2), ("csg", 2), ("nsg", 2))
_TEXT_FLAGS = "_f" / Bits8(("final", 1), ("cont", 1), (None, 6))


@dataclass(frozen=True, kw_only=True)
class Pdu:
    """Fields every PDU may carry besides its header."""

    OPCODE: ClassVar[Opcode]
    _BHS: ClassVar[Any]
    _GROUPS: ClassVar[dict[str, tuple[str, ...]]]
    _PLAIN: ClassVar[tuple[str, ...]]
    _FAST: ClassVar[Any]

    data: bytes | memoryview = b""

    @property
    def opcode(self) -> Opcode:
        return self.OPCODE


def _inner_names(sub: Any) -> tuple[str, ...]:
    while not isinstance(sub, Bits8):
        sub = sub.subcon
    return tuple(n for n in sub.names if not n.startswith("_"))


def _pdu(opcode: Opcode, bhs: Any) -> Any:
    def register(cls: type[Pdu]) -> type[Pdu]:
        cls.OPCODE = opcode
        cls._BHS = bhs
        cls._GROUPS = {s.name: _inner_names(s) for s in bhs.subcons if s.name and s.name.startswith("_")
                       and s.name not in ("_ahs_words", "_data_length")}
        cls._FAST = bhs.compile()  # 2-4x faster; a test checks it agrees with ``bhs`` on every vector
        cls._PLAIN = tuple(s.name for s in bhs.subcons if s.name and not s.name.startswith("_"))
        assert bhs.sizeof() == BHS_SIZE, cls
        PDU_CLASSES[opcode] = cls
        return cls
    return register


PDU_CLASSES: dict[Opcode, type[Pdu]] = {}


@_pdu(Opcode.NOP_OUT, Struct(_head(immediate=True), _FINAL_ONLY, Padding(2), *_LENGTHS, "lun" / Int64ub,
                             "itt" / Int32ub, "ttt" / Int32ub, "cmdsn" / Int32ub, "expstatsn" / Int32ub, Padding(16)))
@dataclass(frozen=True, kw_only=True)
class NopOut(Pdu):
    immediate: bool = False
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    expstatsn: int = 0


@_pdu(Opcode.NOP_IN, Struct(_head(immediate=False), _FINAL_ONLY, Padding(2), *_LENGTHS, "lun" / Int64ub,
                            "itt" / Int32ub, "ttt" / Int32ub, "statsn" / Int32ub, "expcmdsn" / Int32ub,
                            "maxcmdsn" / Int32ub, Padding(12)))
@dataclass(frozen=True, kw_only=True)
class NopIn(Pdu):
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0


@_pdu(Opcode.SCSI_COMMAND, Struct(
    _head(immediate=True),
    "_f" / Bits8(("final", 1), ("read", 1), ("write", 1), (None, 2), ("attr", 3)),
    Padding(2), *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "expected_length" / Int32ub, "cmdsn" / Int32ub,
    "expstatsn" / Int32ub, "cdb" / Bytes(CDB_FIELD_SIZE)))
@dataclass(frozen=True, kw_only=True)
class ScsiCommand(Pdu):
    immediate: bool = False
    final: bool = True
    read: bool = False
    write: bool = False
    attr: int = 1  # SIMPLE
    lun: int = 0
    itt: int
    expected_length: int = 0
    cmdsn: int
    expstatsn: int = 0
    cdb: bytes
    ahs: bytes = b""


@_pdu(Opcode.SCSI_RESPONSE, Struct(
    _head(immediate=False),
    "_f" / Bits8(("1", 1), (None, 2), ("bidi_overflow", 1), ("bidi_underflow", 1), ("overflow", 1),
                 ("underflow", 1), (None, 1)),
    "response" / Int8ub, "status" / Int8ub, *_LENGTHS, Padding(8), "itt" / Int32ub, "snack_tag" / Int32ub,
    "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, "expdatasn" / Int32ub,
    "bidi_residual" / Int32ub, "residual" / Int32ub))
@dataclass(frozen=True, kw_only=True)
class ScsiResponse(Pdu):
    bidi_overflow: bool = False
    bidi_underflow: bool = False
    overflow: bool = False
    underflow: bool = False
    response: int = 0
    status: int = 0
    itt: int
    snack_tag: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    expdatasn: int = 0
    bidi_residual: int = 0
    residual: int = 0


@_pdu(Opcode.TMF_REQUEST, Struct(
    _head(immediate=True), "_f" / Bits8(("1", 1), ("function", 7)), Padding(2), *_LENGTHS,
    "lun" / Int64ub, "itt" / Int32ub, "referenced_tag" / Int32ub, "cmdsn" / Int32ub, "expstatsn" / Int32ub,
    "refcmdsn" / Int32ub, "expdatasn" / Int32ub, Padding(8)))
@dataclass(frozen=True, kw_only=True)
class TmfRequest(Pdu):
    immediate: bool = True
    function: int
    lun: int = 0
    itt: int
    referenced_tag: int = RESERVED_TAG
    cmdsn: int = 0
    expstatsn: int = 0
    refcmdsn: int = 0
    expdatasn: int = 0


@_pdu(Opcode.TMF_RESPONSE, Struct(
    _head(immediate=False), _FINAL_ONLY, "response" / Int8ub, Padding(1), *_LENGTHS, Padding(8), "itt" / Int32ub,
    Padding(4), "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, Padding(12)))
@dataclass(frozen=True, kw_only=True)
class TmfResponse(Pdu):
    response: int = 0
    itt: int
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0


@_pdu(Opcode.LOGIN_REQUEST, Struct(
    _head(immediate=True), _LOGIN_FLAGS, "version_max" / Int8ub, "version_min" / Int8ub, *_LENGTHS,
    "isid" / Bytes(6), "tsih" / Int16ub, "itt" / Int32ub, "cid" / Int16ub, Padding(2), "cmdsn" / Int32ub,
    "expstatsn" / Int32ub, Padding(16)))
@dataclass(frozen=True, kw_only=True)
class LoginRequest(Pdu):
    immediate: bool = True
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_min: int = 0
    isid: bytes
    tsih: int = 0
    itt: int
    cid: int = 0
    cmdsn: int = 0
    expstatsn: int = 0


@_pdu(Opcode.LOGIN_RESPONSE, Struct(
    _head(immediate=False), _LOGIN_FLAGS, "version_max" / Int8ub, "version_active" / Int8ub, *_LENGTHS,
    "isid" / Bytes(6), "tsih" / Int16ub, "itt" / Int32ub, Padding(4), "statsn" / Int32ub, "expcmdsn" / Int32ub,
    "maxcmdsn" / Int32ub, "status_class" / Int8ub, "status_detail" / Int8ub, Padding(10)))
@dataclass(frozen=True, kw_only=True)
class LoginResponse(Pdu):
    transit: bool = False
    cont: bool = False
    csg: int = 0
    nsg: int = 0
    version_max: int = 0
    version_active: int = 0
    isid: bytes
    tsih: int = 0
    itt: int
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    status_class: int = 0
    status_detail: int = 0

    @property
    def status(self) -> int:
        return self.status_class << 8 | self.status_detail


@_pdu(Opcode.TEXT_REQUEST, Struct(
    _head(immediate=True), _TEXT_FLAGS, Padding(2), *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "ttt" / Int32ub,
    "cmdsn" / Int32ub, "expstatsn" / Int32ub, Padding(16)))
@dataclass(frozen=True, kw_only=True)
class TextRequest(Pdu):
    immediate: bool = False
    final: bool = True
    cont: bool = False
    lun: int = 0
    itt: int
    ttt: int = RESERVED_TAG
    cmdsn: int = 0
    expstatsn: int = 0


@_pdu(Opcode.TEXT_RESPONSE, Struct(
    _head(immediate=False), _TEXT_FLAGS, Padding(2), *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "ttt" / Int32ub,
    "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, Padding(12)))
@dataclass(frozen=True, kw_only=True)
class TextResponse(Pdu):
    final: bool = True
    cont: bool = False
    lun: int = 0
    itt: int
    ttt: int = RESERVED_TAG
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0


@_pdu(Opcode.DATA_OUT, Struct(
    _head(immediate=False), _FINAL, Padding(2), *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "ttt" / Int32ub,
    Padding(4), "expstatsn" / Int32ub, Padding(4), "datasn" / Int32ub, "offset" / Int32ub, Padding(4)))
@dataclass(frozen=True, kw_only=True)
class DataOut(Pdu):
    final: bool = False
    lun: int = 0
    itt: int
    ttt: int = RESERVED_TAG
    expstatsn: int = 0
    datasn: int = 0
    offset: int = 0


@_pdu(Opcode.DATA_IN, Struct(
    _head(immediate=False),
    "_f" / Bits8(("final", 1), ("ack", 1), (None, 3), ("overflow", 1), ("underflow", 1), ("has_status", 1)),
    Padding(1), "status" / Int8ub, *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "ttt" / Int32ub,
    "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, "datasn" / Int32ub, "offset" / Int32ub,
    "residual" / Int32ub))
@dataclass(frozen=True, kw_only=True)
class DataIn(Pdu):
    final: bool = False
    ack: bool = False
    overflow: bool = False
    underflow: bool = False
    has_status: bool = False
    status: int = 0
    lun: int = 0
    itt: int
    ttt: int = RESERVED_TAG
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    datasn: int = 0
    offset: int = 0
    residual: int = 0


@_pdu(Opcode.LOGOUT_REQUEST, Struct(
    _head(immediate=True), "_f" / Bits8(("1", 1), ("reason", 7)), Padding(2), *_LENGTHS,
    Padding(8), "itt" / Int32ub, "cid" / Int16ub, Padding(2), "cmdsn" / Int32ub, "expstatsn" / Int32ub, Padding(16)))
@dataclass(frozen=True, kw_only=True)
class LogoutRequest(Pdu):
    immediate: bool = True
    reason: int = 0
    itt: int
    cid: int = 0
    cmdsn: int = 0
    expstatsn: int = 0


@_pdu(Opcode.LOGOUT_RESPONSE, Struct(
    _head(immediate=False), _FINAL_ONLY, "response" / Int8ub, Padding(1), *_LENGTHS, Padding(8), "itt" / Int32ub,
    Padding(4), "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, Padding(4),
    "time2wait" / Int16ub, "time2retain" / Int16ub, Padding(4)))
@dataclass(frozen=True, kw_only=True)
class LogoutResponse(Pdu):
    response: int = 0
    itt: int
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    time2wait: int = 0
    time2retain: int = 0


@_pdu(Opcode.R2T, Struct(
    _head(immediate=False), _FINAL_ONLY, Padding(2), *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "ttt" / Int32ub,
    "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, "r2tsn" / Int32ub, "offset" / Int32ub,
    "length" / Int32ub))
@dataclass(frozen=True, kw_only=True)
class R2T(Pdu):
    lun: int = 0
    itt: int
    ttt: int
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    r2tsn: int = 0
    offset: int = 0
    length: int


@_pdu(Opcode.ASYNC_MESSAGE, Struct(
    _head(immediate=False), _FINAL_ONLY, Padding(2), *_LENGTHS, "lun" / Int64ub, Const(RESERVED_TAG, Int32ub),
    Padding(4), "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub, "event" / Int8ub, "vcode" / Int8ub,
    "param1" / Int16ub, "param2" / Int16ub, "param3" / Int16ub, Padding(4)))
@dataclass(frozen=True, kw_only=True)
class AsyncMessage(Pdu):
    lun: int = 0
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    event: int = 0
    vcode: int = 0
    param1: int = 0
    param2: int = 0
    param3: int = 0


@_pdu(Opcode.REJECT, Struct(
    _head(immediate=False), _FINAL_ONLY, "reason" / Int8ub, Padding(1), *_LENGTHS, Padding(8),
    Const(RESERVED_TAG, Int32ub), Padding(4), "statsn" / Int32ub, "expcmdsn" / Int32ub, "maxcmdsn" / Int32ub,
    "datasn" / Int32ub, Padding(8)))
@dataclass(frozen=True, kw_only=True)
class Reject(Pdu):
    """``data`` is the header of the rejected PDU."""

    reason: int
    statsn: int = 0
    expcmdsn: int = 0
    maxcmdsn: int = 0
    datasn: int = 0


@_pdu(Opcode.SNACK_REQUEST, Struct(
    _head(immediate=False), "_f" / Bits8(("1", 1), (None, 3), ("type", 4)), Padding(2),
    *_LENGTHS, "lun" / Int64ub, "itt" / Int32ub, "ttt" / Int32ub, Padding(4), "expstatsn" / Int32ub, Padding(8),
    "begrun" / Int32ub, "runlength" / Int32ub))
@dataclass(frozen=True, kw_only=True)
class Snack(Pdu):
    """Decoded only to be refused: at ErrorRecoveryLevel 0 nobody may send a SNACK."""

    type: int = 0
    lun: int = 0
    itt: int = RESERVED_TAG
    ttt: int = RESERVED_TAG
    expstatsn: int = 0
    begrun: int = 0
    runlength: int = 0


def pdu_fields(cls: type[Pdu]) -> set[str]:
    """The names the BHS declares for ``cls`` (a test checks they are its dataclass fields)."""
    names = {s.name for s in cls._BHS.subcons if s.name and not s.name.startswith("_")}
    for inner in cls._GROUPS.values():
        names.update(inner)
    return names


def encode_bhs(pdu: Pdu, data_length: int, ahs_length: int = 0) -> bytes:
    """The 48-octet header of ``pdu`` (DataSegmentLength and TotalAHSLength given by framing)."""
    cls = type(pdu)
    values: dict[str, Any] = {name: getattr(pdu, name) for name in cls._PLAIN}
    for group, inner in cls._GROUPS.items():
        values[group] = {n: getattr(pdu, n) for n in inner}
    values["_op"]["_opcode"] = int(pdu.OPCODE)
    values["_ahs_words"] = ahs_length // 4
    values["_data_length"] = data_length
    try:
        return cls._FAST.build(values)
    except (ConstructError, ValueError, TypeError) as exc:
        raise IscsiLocalError(f"cannot encode {type(pdu).__name__}: {exc}") from None


def decode_bhs(header: bytes | memoryview, data: bytes | memoryview = b"", ahs: bytes = b"") -> Pdu:
    """The PDU whose header is ``header`` (48 octets), with its data segment and AHS."""
    header = bytes(header[:BHS_SIZE])
    if len(header) < BHS_SIZE:
        raise IscsiDecodeError(IscsiReason.TRUNCATED, f"a BHS is {BHS_SIZE} octets, got {len(header)}", fatal=True)
    try:
        opcode = Opcode(header[0] & 0x3F)
    except ValueError:
        raise IscsiDecodeError(IscsiReason.UNKNOWN_OPCODE, f"opcode 0x{header[0] & 0x3F:02x}", header=header) from None
    cls = PDU_CLASSES[opcode]
    try:
        parsed = cls._FAST.parse(header)
    except ConstructError as exc:
        raise IscsiDecodeError(IscsiReason.BAD_FIELD, f"{cls.__name__}: {exc}", header=header) from None
    values: dict[str, Any] = {}
    for key, value in parsed.items():
        if key.startswith("_"):
            if key in cls._GROUPS:
                values.update({n: value[n] for n in cls._GROUPS[key]})
        else:
            values[key] = value
    if "immediate" in cls._GROUPS.get("_op", ()):
        values["immediate"] = parsed["_op"]["immediate"]
    if ahs:
        if cls is not ScsiCommand:
            raise IscsiDecodeError(IscsiReason.BAD_FIELD, f"{cls.__name__} may not carry an AHS", header=header)
        values["ahs"] = ahs
    return cls(**values, data=data)


PDU_NAMES = {cls: cls.__name__ for cls in PDU_CLASSES.values()}
__all__ = ["Pdu", "PDU_CLASSES", "encode_bhs", "decode_bhs", "pdu_fields", *(c.__name__ for c in PDU_CLASSES.values())]
del dataclasses
