"""Render the message catalogue as Markdown, from the construct layouts themselves.

docs/PROTOCOL.md embeds this output, and a test checks that it still matches, so the
document cannot drift from the code.
"""

from __future__ import annotations

import inspect
from typing import Any

from construct import Bytes, FocusedSeq, FormatField, GreedyBytes, Prefixed, Renamed, StringEncoded

from .constants import (
    DRIVE_LAN_PORT,
    DRIVE_PORT,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    VOP_PORT,
    HeaderFlag,
    MessageType,
)
from .layouts import AuthTrailer, BODIES, DataclassAdapter, EnumAdapter, Header, StrictFlag
from .messages import MESSAGE_CLASSES

_INT = {">B": ("u8", 1), ">H": ("u16", 2), ">I": ("u32", 4), ">L": ("u32", 4), ">Q": ("u64", 8), ">l": ("i32", 4)}

#: Who sends each message, how, and who answers: the one home of these facts.
ROUTES: dict[MessageType, str] = {
    MessageType.KEYS_AVAILABLE: f"token → every drive: UDP broadcast from the token's IP:{TOKEN_LAN_PORT} to :{DRIVE_LAN_PORT}",
    MessageType.KEY_REQUEST: f"drive → token: UDP from the drive's IP:{DRIVE_PORT} to the token's IP:{TOKEN_LAN_PORT}",
    MessageType.DEVICE_KEY_PACKAGE: "token → drive: UDP reply to a KEY_REQUEST (sequence echoed, REPLY flag)",
    MessageType.MEDIA_KEY_PACKAGE: "token → drive: UDP reply to a KEY_REQUEST (sequence echoed, REPLY flag)",
    MessageType.NO_PACKAGE: "token → drive: UDP reply to a KEY_REQUEST the token cannot serve",
    MessageType.KEY_ACK: f"drive → token: UDP to the token's IP:{TOKEN_LAN_PORT}, after accepting a package",
    MessageType.ERROR_REPORT: f"drive → token: UDP to the token's IP:{TOKEN_LAN_PORT}",
    MessageType.CLEAR_KEYS: f"token → every drive: UDP broadcast to :{DRIVE_LAN_PORT}, in parts of ≤ 1,200 octets",
    MessageType.WRITE_EKT: f"KMS → token: TCP to the token's IP:{TOKEN_MGMT_PORT}, sealed; answered by MGMT_RESULT",
    MessageType.WRITE_OKT: f"KMS → token: TCP to the token's IP:{TOKEN_MGMT_PORT}, sealed; answered by MGMT_RESULT",
    MessageType.READ_STATUS: f"KMS → token: TCP :{TOKEN_MGMT_PORT}, sealed; answered by TOKEN_STATUS",
    MessageType.CLEAR_ERROR: f"KMS → token: TCP :{TOKEN_MGMT_PORT}, sealed; answered by MGMT_RESULT",
    MessageType.RESYNC: f"KMS → token: TCP :{TOKEN_MGMT_PORT}, sealed, after a MGMT_CHALLENGE; answered by MGMT_RESULT",
    MessageType.MGMT_RESULT: "token → KMS: TCP reply, sealed (counter echoed)",
    MessageType.TOKEN_STATUS: "token → KMS: TCP reply, sealed (counter echoed)",
    MessageType.MGMT_CHALLENGE: "token → KMS: TCP reply, sealed (counter echoed), from a token without a replay counter",
    MessageType.VOP_STATUS_REQUEST: f"VOP → drive: TCP to the drive's IP:{VOP_PORT}; answered by VOP_STATUS",
    MessageType.VOP_STATUS: "drive → VOP: TCP reply",
    MessageType.VOP_RESET_DRIVE: "VOP → drive: TCP, on the connection that got the VOP_CHALLENGE it answers; "
                                 "answered by VOP_RESULT",
    MessageType.VOP_RESULT: "drive → VOP: TCP reply",
    MessageType.VOP_LOAD: f"VOP → drive: TCP to the drive's IP:{VOP_PORT}; answered by VOP_RESULT",
    MessageType.VOP_UNLOAD: f"VOP → drive: TCP to the drive's IP:{VOP_PORT}; answered by VOP_RESULT",
    MessageType.VOP_CHALLENGE_REQUEST: f"VOP → drive: TCP to the drive's IP:{VOP_PORT}, first step of Reset Drive; "
                                       "answered by VOP_CHALLENGE",
    MessageType.VOP_CHALLENGE: "drive → VOP: TCP reply, good for one reset on this connection",
}


def _describe(con: Any, nested: dict[str, Any]) -> tuple[str, str]:
    """(encoding, size) of one field."""
    if isinstance(con, Renamed):
        return _describe(con.subcon, nested)
    if isinstance(con, DataclassAdapter):
        message_type = getattr(con.cls, "TYPE", None)
        if message_type is not None:  # a whole message body, embedded
            return f"the {message_type.name} body", _size(con)
        nested.setdefault(con.cls.__name__, con)
        return f"{con.cls.__name__} (below)", _size(con)
    if isinstance(con, StrictFlag):
        return "u8 flag: 0 or 1", "1"
    if isinstance(con, EnumAdapter):
        kind, size = _INT[con.subcon.fmtstr]
        nested.setdefault("enum:" + con.enum_cls.__name__, con.enum_cls)
        return f"{kind} {con.enum_cls.__name__}", str(size)
    if isinstance(con, FormatField):
        kind, size = _INT[con.fmtstr]
        return kind, str(size)
    if isinstance(con, Bytes):
        return "octets", str(con.length)
    if isinstance(con, StringEncoded):
        kind, size = _INT[con.subcon.lengthfield.fmtstr]
        return f"{kind} length, then {con.encoding.upper()}", f"{size} + n"
    if isinstance(con, Prefixed):
        kind, size = _INT[con.lengthfield.fmtstr]
        return f"{kind} length, then octets", f"{size} + n"
    if isinstance(con, FocusedSeq):  # PrefixedArray
        count, items = con.subcons
        kind, size = _INT[count.subcon.subcon.fmtstr]  # Renamed(Rebuild(IntXub))
        element = items.subcon.subcon  # Renamed(Array(element))
        item, _ = _describe(element, nested)
        return f"{kind} count, then that many × {item}", f"{size} + n × {_size(element)}"
    if con is GreedyBytes:
        return "octets", "n"
    raise TypeError(f"docgen does not know {con!r}")


def _size(con: Any) -> str:
    try:
        return str(con.sizeof())
    except Exception:
        return "variable"


def _table(struct: Any, nested: dict[str, Any]) -> list[str]:
    rows = ["| field | encoding | octets |", "|---|---|---|"]
    for sub in struct.subcons:
        encoding, size = _describe(sub, nested)
        rows.append(f"| `{sub.name}` | {encoding} | {size} |")
    if len(rows) == 2:
        rows.append("| (empty body) | | 0 |")
    return rows


def render_catalogue() -> str:
    lines = ["### Header (every message)", "", *_table(Header, {}), "",
             "### Sealing trailer (when the AUTHENTICATED flag is set)", "",
             "The body before it is the AES-256-GCM ciphertext of the body below, and its 16-octet tag.", "",
             *_table(AuthTrailer, {}), ""]
    nested: dict[str, Any] = {}
    for mt in MessageType:
        cls = MESSAGE_CLASSES[mt]
        doc = inspect.getdoc(cls) or ""
        lines += [f"### {mt.name} (0x{int(mt):02X})", "", f"{ROUTES[mt]}." + (f" {doc.splitlines()[0]}" if doc else ""),
                  "", *_table(BODIES[mt].subcon, nested), ""]
    done: set[str] = set()
    while len(done) < len(nested):
        for name, con in sorted(nested.items()):
            if name in done or name.startswith("enum:"):
                continue
            done.add(name)
            lines += [f"### {name} (embedded)", "", *_table(con.subcon, nested), ""]
        done |= {n for n in nested if n.startswith("enum:")}
    lines += ["### Enumerations", ""]
    for name in sorted(n for n in nested if n.startswith("enum:")):
        enum_cls = nested[name]
        lines += [f"`{enum_cls.__name__}`: " + ", ".join(f"{m.name} = 0x{int(m):0{2 if int(m) < 256 else 8}X}"
                                                          for m in enum_cls) + "  ", ""]
    lines += ["`HeaderFlag`: " + ", ".join(f"{m.name} = 0x{int(m):04X}" for m in HeaderFlag if m) + "  ", ""]
    return "\n".join(lines).rstrip() + "\n"


def render_sense_profiles() -> str:
    """Both sense profiles side by side, from protocol.sense."""
    from .sense import PROFILES, Condition, SenseProfile

    t10k, ssc = PROFILES[SenseProfile.T10000], PROFILES[SenseProfile.SSC]
    rows = ["| condition | T10000 (default) | SSC-3 (`--sense-profile ssc`) |", "|---|---|---|"]
    for c in Condition:
        rows.append(f"| {c.value} | `{t10k[c]}` | `{ssc[c]}` |")
    return "\n".join(rows) + "\n"


def render_scsi_sense() -> str:
    """Each condition's fixed-format sense octets (T10000 profile), from protocol.sense and
    protocol.scsi: what docs/SCSI.md shows. The key ID octets are zero except for a missing
    key; INFORMATION (octets 3-6) carries the residue and is not shown."""
    from .scsi import SenseData
    from .sense import PROFILES, Condition, SenseProfile

    rows = ["| condition | seed notation | octet 2 | octets 12-13 | octets 18-19 (FSC) | octets 20-27 |",
            "|---|---|---|---|---|---|"]
    for c in Condition:
        sense = PROFILES[SenseProfile.T10000][c]
        raw = SenseData.of(sense, filemark=c is Condition.FILEMARK, eom=c is Condition.BEGINNING_OF_TAPE).build()
        key = "the key ID" if c is Condition.MISSING_KEY else "0"
        rows.append(f"| {c.value} | `{sense}` | `{raw[2]:02x}` | `{raw[12:14].hex()}` | `{raw[18:20].hex()}` | {key} |")
    return "\n".join(rows) + "\n"
