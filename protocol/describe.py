"""Every field of a message as plain data (for ``t10k pcap decode``, MQTT payloads, logs).

:func:`describe` turns a message (or any of our dataclasses) into JSON-ready values: enums
by name (error codes as ``00006109 (MISSING_KEY)``), timestamps as ISO 8601, octets as
hex, nested messages and lists in full, a CSN filter as its size, hash count and bits set
(with the bits as hex). Wrapped keys are ciphertext bound to their drive; no plaintext key
is ever a message field. :func:`render` lays the same data out as text lines.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from .csn_filter import CsnFilter
from .timestamps import format_timestamp


def _is_time(name: str) -> bool:
    return "timestamp" in name or name == "reported_at"


def _value(name: str, value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return f"{int(value):08X} ({value.name})" if name.endswith("code") else value.name
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return format_timestamp(value) if _is_time(name) else value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, CsnFilter):
        return {"bits": 8 * len(value.bits), "hash_count": value.hash_count,
                "bits_set": sum(bin(b).count("1") for b in value.bits), "bits_hex": value.bits.hex()}
    if isinstance(value, (tuple, list)):
        return [_value(name, v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return describe(value)
    if isinstance(value, (str, float)) or value is None:
        return value
    return str(value)


def describe(message: Any) -> dict[str, Any]:
    """Every field of a dataclass, by name, with its real value."""
    describer = _DESCRIBERS.get(message.__class__)
    if describer is None:
        if isinstance(message, type) or not dataclasses.is_dataclass(message):
            return _describe(message)  # what dataclasses.fields makes of it (TypeError for non-dataclasses)
        describer = _DESCRIBERS[message.__class__] = _Compiler().describer(message.__class__)
    return describer(message)


def _describe(message: Any) -> dict[str, Any]:
    """The rules above, read field by field: what every compiled describer must equal."""
    return {f.name: _value(f.name, getattr(message, f.name)) for f in dataclasses.fields(message)}


# --- describers compiled per class ---------------------------------------------------------
# A capture's decode describes tens of thousands of messages. For each dataclass, once, the
# fields' declared types give straight-line code: a value of exactly its declared type takes
# its rule at once (an enum member's text and a timestamp's text looked up); any other value
# goes to _value, so the result is always what _describe gives (tests/unit/test_describe.py).

_DESCRIBERS: dict[type, Any] = {}
#: Types _value treats before (or instead of) "a dataclass": never described as nested records.
_NOT_RECORDS = (enum.Enum, int, bytes, bytearray, memoryview, CsnFilter, tuple, list, str, float)
_CACHED_TEXTS = 1 << 16


class _Texts(dict):  # type: ignore[type-arg]
    """A value's text, computed once by ``make``: enum members, timestamps."""

    def __init__(self, make: Any) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key: Any) -> Any:
        text = self.make(key)
        if len(self) < _CACHED_TEXTS:
            self[key] = text
        return text


_TIMESTAMPS = _Texts(format_timestamp)


class _Compiler:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"_value": _value, "_describe": describe, "_ts": _TIMESTAMPS}
        self.count = 0

    def const(self, value: Any) -> str:
        self.count += 1
        name = f"_k{self.count}"
        self.namespace[name] = value
        return name

    def describer(self, cls: type) -> Any:
        import typing

        fields = dataclasses.fields(cls)
        try:
            hints = typing.get_type_hints(cls)
        except Exception:  # noqa: BLE001 - an annotation that does not resolve: every field by the rules
            hints = {}
        items = [f"{f.name!r}: {self.value(f.name, f'm.{f.name}', hints.get(f.name))}" for f in fields]
        source = f"def _describe_one(m):\n    return {{{', '.join(items)}}}\n"
        exec(compile(source, f"<describe {cls.__qualname__}>", "exec"), self.namespace)  # noqa: S102
        return self.namespace.pop("_describe_one")

    def value(self, name: str, expr: str, hint: Any) -> str:
        """An expression for ``_value(name, <expr>)``, fast when the value has the declared type."""
        slow = f"_value({name!r}, {expr})"
        fast = self._fast(name, hint)
        if fast is None:
            return slow
        guard, text = fast
        # expr is an attribute read (m.x) or a loop variable: reading it again costs little
        return f"({text.format(v=expr)} if {expr}.__class__ is {guard} else {slow})"

    def _fast(self, name: str, hint: Any) -> tuple[str, str] | None:
        """(the exact class to check, the text of the fast expression over {v}), or None."""
        if not isinstance(hint, type):
            return self._sequence(name, hint)
        if issubclass(hint, enum.Enum):
            if issubclass(hint, enum.Flag) or (name.endswith("code") and not issubclass(hint, int)):
                return None
            texts = self.const(_Texts(lambda member: _value(name, member)))
            return self.const(hint), f"{texts}[{{v}}]"
        if hint is bool or hint is str or hint is float:
            return self.const(hint), "{v}"
        if hint is int:
            return "int", "_ts[{v}]" if _is_time(name) else "{v}"
        if hint is bytes:
            return "bytes", "{v}.hex()"
        if dataclasses.is_dataclass(hint) and not issubclass(hint, _NOT_RECORDS):
            return self.const(hint), "_describe({v})"
        return None

    def _sequence(self, name: str, hint: Any) -> tuple[str, str] | None:
        import typing

        args = typing.get_args(hint)
        if typing.get_origin(hint) is not tuple or len(args) != 2 or args[1] is not Ellipsis:
            return None
        item = self.value(name, "x", args[0])
        return "tuple", f"[{item} for x in {{v}}]"


def _scalar(value: Any) -> str:
    return "-" if value is None else str(value)


def render(fields: dict[str, Any], indent: str = "    ") -> tuple[str, list[str]]:
    """``(summary, more)``: the scalar fields as ``k=v`` on one line, and one indented line per
    nested structure (``package: ...``, ``entries[0]: ...``), recursively."""
    scalars = " ".join(f"{k}={_scalar(v)}" for k, v in fields.items() if not isinstance(v, (dict, list)))
    more: list[str] = []
    for k, v in fields.items():
        if isinstance(v, dict):
            _nested(f"{k}", v, indent, more)
        elif isinstance(v, list):
            if not v:
                more.append(f"{indent}{k}: (none)")
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    _nested(f"{k}[{i}]", item, indent, more)
                else:
                    more.append(f"{indent}{k}[{i}]: {_scalar(item)}")
    return scalars, more


def _nested(label: str, fields: dict[str, Any], indent: str, out: list[str]) -> None:
    summary, more = render(fields, indent + "  ")
    out.append(f"{indent}{label}: {summary}".rstrip())
    out.extend(more)


def describe_iscsi(pdu: Any) -> dict[str, Any]:
    """An iSCSI PDU's header fields (the data segment by its length only: it is a host's data);
    a SCSI command names its operation, a CHECK CONDITION its sense in the seed's notation."""
    from .constants import ScsiOp
    from .errors import ProtocolError
    from .iscsi import ScsiCommand, ScsiResponse
    from .scsi import SenseData

    fields: dict[str, Any] = {"pdu": type(pdu).__name__}
    fields |= {f.name: _value(f.name, getattr(pdu, f.name)) for f in dataclasses.fields(pdu) if f.name != "data"}
    fields["data_length"] = len(pdu.data)
    if isinstance(pdu, ScsiCommand) and pdu.cdb:
        op = pdu.cdb[0]
        fields["operation"] = ScsiOp(op).name if op in ScsiOp._value2member_map_ else f"{op:02X}h"
    if isinstance(pdu, ScsiResponse) and pdu.status == 0x02 and len(pdu.data) >= 2:
        length = int.from_bytes(pdu.data[:2], "big")
        try:
            sense = SenseData.parse(pdu.data[2:2 + length])
            fields["sense"], fields["sense_key_id"] = str(sense.seed), sense.key_id.hex()
        except (ProtocolError, ValueError) as exc:
            fields["sense"] = f"unreadable: {exc}"
    return fields
