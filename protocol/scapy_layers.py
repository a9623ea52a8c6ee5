"""scapy layers for every message, generated from the construct catalogue.

The layouts have one home (protocol/layouts.py); this module walks them and declares
the equivalent scapy fields, so ``rdpcap`` shows our messages by name and ``show()``
lists every field. tests/unit/test_scapy_layers.py proves both produce and accept the
same bytes for every message. Import this module only where scapy is wanted: it costs
a few hundred milliseconds and is never on a daemon's hot path.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from construct import Bytes, FocusedSeq, FormatField, GreedyBytes, Prefixed, Renamed, StringEncoded
from scapy.fields import (
    ByteEnumField,
    ByteField,
    Field,
    FieldLenField,
    IntEnumField,
    IntField,
    LongField,
    PacketField,
    PacketListField,
    ShortField,
    SignedIntField,
    StrField,
    StrFixedLenField,
    StrLenField,
    XStrFixedLenField,
    XStrLenField,
)
from scapy.layers.inet import TCP, UDP
from scapy.packet import Packet, Raw, bind_layers

from .constants import (
    DRIVE_LAN_PORT,
    DRIVE_PORT,
    PROTOCOL_VERSION,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    VOP_PORT,
    HeaderFlag,
    MessageType,
)
from .layouts import BODIES, DataclassAdapter, EnumAdapter, StrictFlag
from .messages import MESSAGE_CLASSES, Message

_INT_FIELDS = {">B": ByteField, ">H": ShortField, ">I": IntField, ">L": IntField, ">Q": LongField,
               ">l": SignedIntField}
_AUTH_TRAILER = 20  # counter (8) and nonce (12) after a sealed body


class T10K(Packet):
    """The frame header; the body layer is chosen by ``type``."""

    name = "T10K"
    fields_desc = [
        StrFixedLenField("magic", b"T10K", 4),
        ByteField("version", PROTOCOL_VERSION),
        ByteEnumField("type", 0, {int(t): t.name for t in MessageType}),
        ShortField("flags", 0),
        IntField("sequence", 0),
        IntField("body_length", None),
    ]

    def post_build(self, pkt: bytes, pay: bytes) -> bytes:
        if self.body_length is None:
            trailer = _AUTH_TRAILER if self.flags & HeaderFlag.AUTHENTICATED else 0
            pkt = pkt[:12] + (len(pay) - trailer).to_bytes(4, "big") + pkt[16:]
        return pkt + pay

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        """A sealed (management) body cannot be dissected without the token secret."""
        if self.flags & HeaderFlag.AUTHENTICATED:
            return T10KSealed
        return super().guess_payload_class(payload)  # type: ignore[no-any-return]

    def do_dissect_payload(self, s: bytes) -> None:
        """A message with an empty body (READ_STATUS, UNLOAD, ...) still shows its layer."""
        if not s and self.type in _BODY_BY_TYPE and not self.flags & HeaderFlag.AUTHENTICATED:
            self.add_payload(_BODY_BY_TYPE[self.type](_internal=1, _underlayer=self))
            return
        super().do_dissect_payload(s)

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        """One frame's body (and trailer); what follows in a TCP segment is the next frame."""
        n = self.body_length + (_AUTH_TRAILER if self.flags & HeaderFlag.AUTHENTICATED else 0)
        return s[:n], s[n:]


class T10KSealed(Packet):
    """A management body: AES-256-GCM ciphertext and tag under the token secret."""

    name = "T10K sealed body"
    fields_desc = [XStrLenField("sealed", b"", length_from=lambda pkt: pkt.underlayer.body_length
                                if pkt.underlayer is not None else 0)]

    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        return T10KAuth if len(payload) == _AUTH_TRAILER else Raw


class T10KAuth(Packet):
    name = "T10K sealing trailer"
    fields_desc = [LongField("counter", 0), XStrFixedLenField("nonce", b"\0" * 12, 12)]


class _Nested(Packet):
    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class _Body(Packet):
    def guess_payload_class(self, payload: bytes) -> type[Packet]:
        under = self.underlayer
        if under is not None and under.flags & HeaderFlag.AUTHENTICATED and len(payload) == _AUTH_TRAILER:
            return T10KAuth
        return Raw


_classes: dict[str, type[Packet]] = {}
_enums: dict[str, type[enum.IntEnum]] = {}


def _fields(struct: Any) -> list[Field]:  # type: ignore[type-arg]
    fields: list[Field] = []  # type: ignore[type-arg]
    for sub in struct.subcons:
        fields.extend(_field(sub.name, sub.subcon))
    return fields


def _field(name: str, con: Any) -> list[Field]:  # type: ignore[type-arg]
    if isinstance(con, Renamed):
        return _field(name, con.subcon)
    if isinstance(con, DataclassAdapter):
        return [PacketField(name, None, _packet_class(con, nested=True))]
    if isinstance(con, StrictFlag):
        return [ByteField(name, 0)]
    if isinstance(con, EnumAdapter):
        _enums[name] = con.enum_cls
        names = {int(m): m.name for m in con.enum_cls}
        return [ByteEnumField(name, 0, names) if con.subcon.fmtstr == ">B" else IntEnumField(name, 0, names)]
    if isinstance(con, FormatField):
        return [_INT_FIELDS[con.fmtstr](name, 0)]
    if isinstance(con, Bytes):
        return [XStrFixedLenField(name, b"\0" * con.length, con.length)]
    if isinstance(con, (StringEncoded, Prefixed)):
        prefixed = con.subcon if isinstance(con, StringEncoded) else con
        fmt = prefixed.lengthfield.fmtstr[1]
        return [FieldLenField(f"{name}_length", None, length_of=name, fmt="!" + fmt),
                StrLenField(name, b"", length_from=lambda pkt, n=name: getattr(pkt, f"{n}_length"))]
    if isinstance(con, FocusedSeq):  # PrefixedArray(count, element)
        count, items = con.subcons
        element = items.subcon.subcon
        fmt = count.subcon.subcon.fmtstr[1]
        return [FieldLenField(f"{name}_count", None, count_of=name, fmt="!" + fmt),
                PacketListField(name, [], _packet_class(element, nested=True),
                                count_from=lambda pkt, n=name: getattr(pkt, f"{n}_count"))]
    if con is GreedyBytes:
        return [StrField(name, b"")]
    raise TypeError(f"no scapy field for {con!r}")


def _packet_class(adapter: DataclassAdapter, *, nested: bool, title: str | None = None) -> type[Packet]:
    cls_name = adapter.cls.__name__ + ("" if nested else "Body")
    if cls_name not in _classes:
        base = _Nested if nested else _Body
        _classes[cls_name] = type(cls_name, (base,), {"name": title or adapter.cls.__name__,
                                                       "fields_desc": _fields(adapter.subcon)})
    return _classes[cls_name]


#: The body layer of each message type.
BODY_LAYERS: dict[MessageType, type[Packet]] = {
    mt: _packet_class(BODIES[mt], nested=False, title=mt.name) for mt in MessageType
}

_BODY_BY_TYPE = {int(mt): layer for mt, layer in BODY_LAYERS.items()}

for _mt, _layer in BODY_LAYERS.items():
    bind_layers(T10K, _layer, type=int(_mt))
for _port in (DRIVE_LAN_PORT, TOKEN_LAN_PORT, DRIVE_PORT):
    bind_layers(UDP, T10K, dport=_port)
    bind_layers(UDP, T10K, sport=_port)
for _port in (TOKEN_MGMT_PORT, VOP_PORT):
    bind_layers(TCP, T10K, dport=_port)
    bind_layers(TCP, T10K, sport=_port)


def _value(value: Any, field_cls: type[Packet] | None = None) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _packet_of(value)
    if isinstance(value, tuple):
        return [_value(v) for v in value]
    if isinstance(value, enum.Enum):
        return int(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    return value


def _packet_of(value: Any) -> Packet:
    cls = _classes[type(value).__name__]
    return cls(**{f.name: _value(getattr(value, f.name)) for f in dataclasses.fields(value)})


def to_scapy(message: Message, *, sequence: int = 0, reply: bool = False) -> Packet:
    """A message as a scapy packet: header and body layer."""
    body_cls = BODY_LAYERS[message.TYPE]
    body = body_cls(**{f.name: _value(getattr(message, f.name)) for f in dataclasses.fields(message)})
    flags = int(HeaderFlag.REPLY) if reply else 0
    return T10K(type=int(message.TYPE), flags=flags, sequence=sequence) / body


__all__ = ["T10K", "T10KSealed", "T10KAuth", "BODY_LAYERS", "to_scapy", "MESSAGE_CLASSES"]
