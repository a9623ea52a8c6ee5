"""Generate the Wireshark Lua dissector from the construct catalogue.

wireshark/t10k.lua is this module's output (``python wireshark/generate.py``); a test
fails if it drifts, and another decodes the reference captures with tshark. Filter
fields are shared by name where every message agrees on their type (``t10k.csn``,
``t10k.key_id``, ``t10k.okt_timestamp`` ...) and qualified by message where not.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from construct import Bytes, FocusedSeq, FormatField, GreedyBytes, Prefixed, Renamed, StringEncoded

from .constants import (
    DRIVE_LAN_PORT,
    DRIVE_PORT,
    HEADER_SIZE,
    MAGIC,
    PROTOCOL_VERSION,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    VOP_PORT,
    HeaderFlag,
    MessageType,
)
from .layouts import AUTH_TRAILER_SIZE, BODIES, DataclassAdapter, EnumAdapter, StrictFlag

_UINT = {">B": ("uint8", 1), ">H": ("uint16", 2), ">I": ("uint32", 4), ">L": ("uint32", 4), ">Q": ("uint64", 8),
         ">l": ("int32", 4)}


def _kind(con: Any) -> tuple[str, Any]:
    """(kind, detail) of a field: int/bytes/string/blob/array/struct."""
    if isinstance(con, Renamed):
        return _kind(con.subcon)
    if isinstance(con, DataclassAdapter):
        return "struct", con
    if isinstance(con, StrictFlag):
        return "int", (">B", None)
    if isinstance(con, EnumAdapter):
        return "int", (con.subcon.fmtstr, con.enum_cls)
    if isinstance(con, FormatField):
        return "int", (con.fmtstr, None)
    if isinstance(con, Bytes):
        return "bytes", con.length
    if isinstance(con, StringEncoded):
        return "string", con.subcon.lengthfield.fmtstr
    if isinstance(con, Prefixed):
        return "blob", con.lengthfield.fmtstr
    if isinstance(con, FocusedSeq):
        count, items = con.subcons
        return "array", (count.subcon.subcon.fmtstr, items.subcon.subcon)
    if con is GreedyBytes:
        return "rest", None
    raise TypeError(f"no Lua for {con!r}")


class _Generator:
    def __init__(self) -> None:
        self.field_types: dict[str, set[str]] = defaultdict(set)
        self.structs: dict[str, Any] = {}
        self.enums: dict[str, Any] = {}

    def _lua_type(self, kind: str, detail: Any) -> str:
        if kind == "int":
            return _UINT[detail[0]][0] + (":" + detail[1].__name__ if detail[1] else "")
        if kind == "bytes":
            return "bytes"
        if kind == "string":
            return "string"
        if kind in ("blob", "rest"):
            return "bytes"
        if kind == "array":
            return "uint" + str(8 * _UINT[detail[0]][1])
        return "none"

    def survey(self, owner: str, struct: Any) -> None:
        for sub in struct.subcons:
            kind, detail = _kind(sub.subcon)
            self.field_types[sub.name].add(self._lua_type(kind, detail))
            if kind == "int" and detail[1]:
                self.enums[detail[1].__name__] = detail[1]
            if kind == "struct" and not hasattr(detail.cls, "TYPE"):
                self.structs[detail.cls.__name__] = detail
                self.survey(detail.cls.__name__, detail.subcon)
            if kind == "array":
                self.structs[detail[1].cls.__name__] = detail[1]
                self.survey(detail[1].cls.__name__, detail[1].subcon)

    def field_id(self, owner: str, name: str) -> str:
        shared = len(self.field_types[name]) == 1
        return f"{name}" if shared else f"{owner.lower()}.{name}"

    def declare(self) -> list[str]:
        lines: list[str] = []
        declared: set[str] = set()
        for owner, struct in [(mt.name, BODIES[mt].subcon) for mt in MessageType] + \
                [(n, s.subcon) for n, s in self.structs.items()]:
            for sub in struct.subcons:
                fid = self.field_id(owner, sub.name)
                if fid in declared:
                    continue
                declared.add(fid)
                kind, detail = _kind(sub.subcon)
                var = "F_" + fid.replace(".", "_")
                label = sub.name.replace("_", " ")
                if kind == "int":
                    lua_t = _UINT[detail[0]][0]
                    values = f", E_{detail[1].__name__}" if detail[1] else ""
                    base = "base.HEX" if detail[1] and lua_t == "uint32" else "base.DEC"
                    lines.append(f'local {var} = ProtoField.{lua_t}("t10k.{fid}", "{label}", {base}{values})')
                elif kind == "string":
                    lines.append(f'local {var} = ProtoField.string("t10k.{fid}", "{label}")')
                elif kind == "array":
                    lines.append(f'local {var} = ProtoField.uint32("t10k.{fid}_count", "{label} (count)")')
                elif kind == "struct":
                    lines.append(f'local {var} = ProtoField.bytes("t10k.{fid}", "{label}")')
                else:
                    lines.append(f'local {var} = ProtoField.bytes("t10k.{fid}", "{label}")')
                lines.append(f"table.insert(fields, {var})")
        return lines

    def parser(self, fname: str, owner: str, struct: Any) -> list[str]:
        """A Lua function (tvb, offset, tree, limit) -> offset dissecting one struct."""
        out = [f"{fname} = function(tvb, off, tree, limit)"]
        for sub in struct.subcons:
            kind, detail = _kind(sub.subcon)
            var = "F_" + self.field_id(owner, sub.name).replace(".", "_")
            if kind == "int":
                size = _UINT[detail[0]][1]
                out.append(f"  tree:add({var}, tvb(off, {size})); off = off + {size}")
            elif kind == "bytes":
                out.append(f"  tree:add({var}, tvb(off, {detail})); off = off + {detail}")
            elif kind in ("string", "blob"):
                size = _UINT[detail][1]
                out.append(f"  do local n = tvb(off, {size}):uint(); if n > 0 then tree:add({var}, "
                           f"tvb(off + {size}, n)) end; off = off + {size} + n end")
            elif kind == "rest":
                out.append(f"  if limit > off then tree:add({var}, tvb(off, limit - off)) end; off = limit")
            elif kind == "struct":
                inner = detail.cls.__name__
                if hasattr(detail.cls, "TYPE"):
                    out.append(f"  do local sub = tree:add(t10k, tvb(off, limit - off), \"{sub.name}\"); "
                               f"off = parse_{detail.cls.TYPE.name}(tvb, off, sub, limit) end")
                else:
                    out.append(f"  do local sub = tree:add(t10k, tvb(off, limit - off), \"{sub.name}\"); "
                               f"off = parse_{inner}(tvb, off, sub, limit) end")
            elif kind == "array":
                size = _UINT[detail[0]][1]
                inner = detail[1].cls.__name__
                out.append(f"  do local n = tvb(off, {size}):uint(); tree:add({var}, tvb(off, {size})); "
                           f"off = off + {size}")
                out.append(f"    for i = 1, n do local sub = tree:add(t10k, tvb(off, limit - off), "
                           f"\"{sub.name} \" .. i); off = parse_{inner}(tvb, off, sub, limit) end end")
        out += ["  return off", "end", ""]
        return out


def render_lua() -> str:
    g = _Generator()
    for mt in MessageType:
        g.survey(mt.name, BODIES[mt].subcon)
    lines = [
        f"-- Wireshark dissector for the t10k-lab protocol (version {PROTOCOL_VERSION}).",
        "-- GENERATED from protocol/layouts.py by wireshark/generate.py: do not edit.",
        "-- Use: wireshark -X lua_script:t10k.lua capture.pcap   or copy it to your plugins folder.",
        "",
        'local t10k = Proto("t10k", "t10k-lab T10000 emulator protocol")',
        "local fields = {}",
        "",
        "local E_MessageType = {" + ", ".join(f"[{int(t)}] = \"{t.name}\"" for t in MessageType) + "}",
    ]
    for name, enum_cls in sorted(g.enums.items()):
        lines.append(f"local E_{name} = {{" + ", ".join(f"[{int(m)}] = \"{m.name}\"" for m in enum_cls) + "}")
    lines += [
        'local F_magic = ProtoField.bytes("t10k.magic", "magic")',
        'local F_version = ProtoField.uint8("t10k.version", "version")',
        'local F_type = ProtoField.uint8("t10k.type", "type", base.HEX, E_MessageType)',
        'local F_flags = ProtoField.uint16("t10k.flags", "flags", base.HEX)',
        'local F_sequence = ProtoField.uint32("t10k.sequence", "sequence")',
        'local F_body_length = ProtoField.uint32("t10k.body_length", "body length")',
        'local F_counter = ProtoField.uint64("t10k.auth.counter", "replay counter")',
        'local F_sealed = ProtoField.bytes("t10k.auth.sealed", "sealed body (AES-256-GCM ciphertext and tag)")',
        'local F_nonce = ProtoField.bytes("t10k.auth.nonce", "nonce")',
        "for _, f in ipairs({F_magic, F_version, F_type, F_flags, F_sequence, F_body_length, F_counter, F_sealed, F_nonce}) do",
        "  table.insert(fields, f) end",
    ]
    lines += g.declare()
    lines += ["t10k.fields = fields", ""]
    names = [f"parse_{n}" for n in g.structs] + [f"parse_{mt.name}" for mt in MessageType]
    lines += [f"local {', '.join(names[i:i + 6])}" for i in range(0, len(names), 6)] + [""]
    for name, struct in g.structs.items():
        lines += g.parser(f"parse_{name}", name, struct.subcon)
    for mt in MessageType:
        lines += g.parser(f"parse_{mt.name}", mt.name, BODIES[mt].subcon)
    lines += ["local BODY = {" + ", ".join(f"[{int(mt)}] = parse_{mt.name}" for mt in MessageType) + "}", ""]
    auth = int(HeaderFlag.AUTHENTICATED)
    lines += f"""
local function frame_length(tvb, off)
  local body = tvb(off + 12, 4):uint()
  local trailer = 0
  if bit.band(tvb(off + 6, 2):uint(), {auth}) ~= 0 then trailer = {AUTH_TRAILER_SIZE} end
  return {HEADER_SIZE} + body + trailer, body, trailer
end

function t10k.dissector(tvb, pinfo, tree)
  local off, len, names = 0, tvb:len(), {{}}
  while off < len do
    if len - off < {HEADER_SIZE} then
      pinfo.desegment_offset = off
      pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
      return len
    end
    if tvb(off, 4):bytes():tohex() ~= "{MAGIC.hex().upper()}" then return off end
    local total, body, trailer = frame_length(tvb, off)
    if len - off < total then
      pinfo.desegment_offset = off
      pinfo.desegment_len = total - (len - off)
      return len
    end
    local mtype = tvb(off + 5, 1):uint()
    local subtree = tree:add(t10k, tvb(off, total), "t10k " .. (E_MessageType[mtype] or "unknown"))
    subtree:add(F_magic, tvb(off, 4)); subtree:add(F_version, tvb(off + 4, 1))
    subtree:add(F_type, tvb(off + 5, 1)); subtree:add(F_flags, tvb(off + 6, 2))
    subtree:add(F_sequence, tvb(off + 8, 4)); subtree:add(F_body_length, tvb(off + 12, 4))
    local parse = BODY[mtype]
    if trailer > 0 then
      -- a management body is sealed under the token secret: its size is all anyone else sees
      if body > 0 then
        subtree:add(F_sealed, tvb(off + {HEADER_SIZE}, body)):set_text("sealed, " .. body .. " octets")
      end
      subtree:add(F_counter, tvb(off + {HEADER_SIZE} + body, 8)); subtree:add(F_nonce, tvb(off + {HEADER_SIZE} + body + 8, 12))
    elseif parse and body > 0 then
      local ok, err = pcall(parse, tvb, off + {HEADER_SIZE}, subtree, off + {HEADER_SIZE} + body)
      if not ok then subtree:add_expert_info(PI_MALFORMED, PI_ERROR, tostring(err)) end
    end
    table.insert(names, E_MessageType[mtype] or "?")
    off = off + total
  end
  pinfo.cols.protocol:set("T10K")
  pinfo.cols.info:set(table.concat(names, ", "))
  return off
end

local udp = DissectorTable.get("udp.port")
for _, port in ipairs({{{DRIVE_LAN_PORT}, {TOKEN_LAN_PORT}, {DRIVE_PORT}}}) do udp:add(port, t10k) end
local tcp = DissectorTable.get("tcp.port")
for _, port in ipairs({{{TOKEN_MGMT_PORT}, {VOP_PORT}}}) do tcp:add(port, t10k) end
""".splitlines()
    return "\n".join(lines).rstrip() + "\n"
