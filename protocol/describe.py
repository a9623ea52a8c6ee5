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
    return {f.name: _value(f.name, getattr(message, f.name)) for f in dataclasses.fields(message)}


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
