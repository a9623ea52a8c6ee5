"""A fast codec compiled from the construct layouts: the layouts stay the one declaration.

construct interprets a layout field by field (tens of microseconds per message); a host
with thousands of drives decodes and encodes hundreds of thousands of them. This module
walks each body layout of :mod:`protocol.layouts` once, at first use, and generates
straight-line Python that reads and writes runs of fixed-size fields with one
:class:`struct.Struct` call each.

The generated code only has a fast path. The moment it meets anything it is not sure
of (too few octets, a value outside an enum, a dataclass invariant, trailing octets, a
value struct cannot pack), it gives up and the declared construct layout handles that
input instead, so a malformed message raises exactly the error the layout raises, and
the fast codec can never accept what the layout refuses (tests/unit/test_fastcodec.py
holds both to this, message by message).
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass, field
from typing import Any, Callable

from construct import (
    Array,
    Bytes,
    Construct,
    FocusedSeq,
    FormatField,
    GreedyBytes,
    Prefixed,
    Rebuild,
    Renamed,
    StringEncoded,
    Struct,
)

from .constants import MessageType
from .layouts import BODIES, DataclassAdapter, EnumAdapter, StrictFlag
from .messages import Message


class NotCompilable(Exception):
    """A layout uses a construct this compiler does not know; the type stays interpreted."""


@dataclass
class _Fixed:
    """A run of fixed-size fields read or written with one struct call."""

    fmt: str = ""
    names: list[str] = field(default_factory=list)
    kinds: list[tuple[str, Any]] = field(default_factory=list)  # ("int"|"bytes"|"enum"|"flag", extra)


class _Compiler:
    def __init__(self) -> None:
        self.namespace: dict[str, Any] = {"_struct_error": struct.error}
        self.lines: list[str] = []
        self._ids = itertools.count()
        self._done: dict[int, str] = {}

    def const(self, value: Any, prefix: str) -> str:
        name = f"_{prefix}{next(self._ids)}"
        self.namespace[name] = value
        return name

    # --- one DataclassAdapter(Struct) -> a parse function and a build function ---

    def record(self, adapter: Construct) -> str:
        """Compile a DataclassAdapter over a Struct; returns the suffix of _p<suffix>/_b<suffix>."""
        if id(adapter) in self._done:
            return self._done[id(adapter)]
        if not isinstance(adapter, DataclassAdapter) or not isinstance(adapter.subcon, Struct):
            raise NotCompilable(f"{type(adapter).__name__} is not a dataclass over a Struct")
        suffix = str(next(self._ids))
        self._done[id(adapter)] = suffix
        cls = self.const(adapter.cls, "C")
        fields: list[Renamed] = list(adapter.subcon.subcons)
        if [f.name for f in fields] != adapter.names:
            raise NotCompilable(f"{adapter.cls.__name__}: Struct fields differ from the dataclass fields")
        parse: list[str] = []
        build: list[str] = []
        runs: list[_Fixed | Renamed] = []
        for f in fields:
            kind = _fixed_kind(f.subcon)
            if kind is None:
                runs.append(f)
                continue
            if not runs or not isinstance(runs[-1], _Fixed):
                runs.append(_Fixed())
            run = runs[-1]
            assert isinstance(run, _Fixed)
            run.fmt += kind[0]
            run.names.append(f.name)
            run.kinds.append(kind[1:])
        for run in runs:
            if isinstance(run, _Fixed):
                self._fixed(run, parse, build)
            else:
                self._variable(run, parse, build)
        made = f"    return {cls}({', '.join(f'{n}=v_{n}' for n in adapter.names)})"
        # Nested records thread the offset and the output list through ...
        self.lines += [f"def _p{suffix}(b, o):", *parse, made + ", o"]
        self.lines += [f"def _b{suffix}(m, out):", *build, "    pass"]
        # ... a whole body is one call: from offset 0 to its very end, into one bytes object.
        self.lines += [f"def _P{suffix}(b):", "    o = 0", *parse, "    if o != len(b): raise ValueError", made]
        if len(runs) == 1 and isinstance(runs[0], _Fixed):
            *setup, last = build
            self.lines += [f"def _B{suffix}(m):", *setup, last.replace("out.append(", "return (", 1)]
        else:
            self.lines += [f"def _B{suffix}(m):", "    out = []", *build, '    return b"".join(out)']
        return suffix

    def _fixed(self, run: _Fixed, parse: list[str], build: list[str]) -> None:
        packer = struct.Struct(">" + run.fmt)
        s = self.const(packer, "S")
        targets = ", ".join(f"v_{n}" for n in run.names)
        parse.append(f"    {targets}{',' if len(run.names) == 1 else ''} = {s}.unpack_from(b, o)")
        parse.append(f"    o += {packer.size}")
        values = []
        for name, (kind, extra) in zip(run.names, run.kinds, strict=True):
            if kind == "enum":
                e = self.const(extra, "E")
                members = self.const({int(member): member for member in extra}, "M")  # a lookup, not a call
                parse.append(f"    v_{name} = {members}[v_{name}]")
                build.append(f"    v_{name} = int({e}(m.{name}))")
            elif kind == "flag":
                parse.append(f"    if v_{name} not in (0, 1): raise ValueError")
                parse.append(f"    v_{name} = v_{name} == 1")
                build.append(f"    v_{name} = 1 if m.{name} else 0")
            elif kind == "bytes":
                build.append(f"    v_{name} = m.{name}")
                build.append(f"    if type(v_{name}) is not bytes or len(v_{name}) != {extra}: raise ValueError")
            else:
                build.append(f"    v_{name} = m.{name}")
            values.append(f"v_{name}")
        build.append(f"    out.append({s}.pack({', '.join(values)}))")

    def _variable(self, f: Renamed, parse: list[str], build: list[str]) -> None:
        name, sub = f.name, f.subcon
        if isinstance(sub, StringEncoded) and _is_prefixed_bytes(sub.subcon):
            n = self.const(struct.Struct(">" + _fmt(sub.subcon.lengthfield)), "S")
            enc = sub.encoding
            parse += [f"    n, = {n}.unpack_from(b, o)", f"    o += {n}.size",
                      f"    v_{name} = b[o:o + n].decode({enc!r})",
                      "    if o + n > len(b): raise ValueError", "    o += n"]
            build += [f"    if type(m.{name}) is not str: raise ValueError",
                      f"    d = m.{name}.encode({enc!r})", f"    out.append({n}.pack(len(d)))", "    out.append(d)"]
        elif _is_prefixed_bytes(sub):
            n = self.const(struct.Struct(">" + _fmt(sub.lengthfield)), "S")
            parse += [f"    n, = {n}.unpack_from(b, o)", f"    o += {n}.size", f"    v_{name} = b[o:o + n]",
                      f"    if len(v_{name}) != n: raise ValueError", "    o += n"]
            build += [f"    if type(m.{name}) is not bytes: raise ValueError",
                      f"    out.append({n}.pack(len(m.{name})))", f"    out.append(m.{name})"]
        elif _is_prefixed_array(sub):
            count, element = _prefixed_array_parts(sub)
            if _min_size(element) == 0:
                raise NotCompilable(f"{name}: an array of empty elements")
            inner = self.record(element)
            n = self.const(struct.Struct(">" + _fmt(count)), "S")
            parse += [f"    n, = {n}.unpack_from(b, o)", f"    o += {n}.size", "    items = []",
                      "    for _ in range(n):", f"        x, o = _p{inner}(b, o)", "        items.append(x)",
                      f"    v_{name} = tuple(items)"]
            build += [f"    out.append({n}.pack(len(m.{name})))", f"    for x in m.{name}: _b{inner}(x, out)"]
        elif isinstance(sub, DataclassAdapter):
            inner = self.record(sub)
            parse.append(f"    v_{name}, o = _p{inner}(b, o)")
            build.append(f"    _b{inner}(m.{name}, out)")
        else:
            raise NotCompilable(f"{name}: {type(sub).__name__} is not supported")


def _fmt(c: Construct) -> str:
    if not isinstance(c, FormatField) or not c.fmtstr.startswith(">"):
        raise NotCompilable(f"{type(c).__name__} is not a big-endian FormatField")
    return str(c.fmtstr[1:])


def _fixed_kind(c: Construct) -> tuple[str, str, Any] | None:
    """(struct code, kind, extra) of a fixed-size field, or None for a variable one."""
    if isinstance(c, FormatField):
        return _fmt(c), "int", None
    if isinstance(c, Bytes) and isinstance(c.length, int):
        return f"{c.length}s", "bytes", c.length
    if isinstance(c, EnumAdapter):
        return _fmt(c.subcon), "enum", c.enum_cls
    if isinstance(c, StrictFlag):
        return _fmt(c.subcon), "flag", None
    return None


def _is_prefixed_bytes(c: Construct) -> bool:
    return isinstance(c, Prefixed) and c.subcon is GreedyBytes


def _is_prefixed_array(c: Construct) -> bool:
    if not isinstance(c, FocusedSeq) or len(c.subcons) != 2:
        return False
    count, items = c.subcons
    return isinstance(count.subcon, Rebuild) and isinstance(items.subcon, Array)


def _prefixed_array_parts(c: FocusedSeq) -> tuple[Construct, Construct]:
    count, items = c.subcons
    return count.subcon.subcon, items.subcon.subcon


def _min_size(c: Construct) -> int:
    try:
        return int(c.sizeof())
    except Exception:
        return 1  # variable-size records of ours always hold at least a length or count


def fixed_struct(layout: Struct) -> struct.Struct:
    """A Struct of fixed-size integer and octet fields (the frame header) as one struct.Struct."""
    codes = []
    for f in layout.subcons:
        kind = _fixed_kind(f.subcon)
        if kind is None or kind[1] not in ("int", "bytes"):
            raise NotCompilable(f"{f.name} is not a plain fixed-size field")
        codes.append(kind[0])
    return struct.Struct(">" + "".join(codes))


# --- the compiled catalogue -------------------------------------------------------------

Parser = Callable[[bytes], Message]
Builder = Callable[[Message], bytes]


def _compile() -> tuple[dict[MessageType, Parser], dict[MessageType, Builder]]:
    parsers: dict[MessageType, Parser] = {}
    builders: dict[MessageType, Builder] = {}
    compiler = _Compiler()
    tops: dict[MessageType, str] = {}
    for message_type, layout in BODIES.items():
        try:
            tops[message_type] = compiler.record(layout)
        except NotCompilable:
            continue  # stays interpreted: still correct, only slower
    exec(compile("\n".join(compiler.lines), "<protocol.fastcodec>", "exec"), compiler.namespace)  # noqa: S102
    for message_type, suffix in tops.items():
        parsers[message_type] = compiler.namespace[f"_P{suffix}"]
        builders[message_type] = compiler.namespace[f"_B{suffix}"]
    return parsers, builders


_PARSERS: dict[MessageType, Parser] = {}
_BUILDERS: dict[MessageType, Builder] = {}


def compiled() -> tuple[dict[MessageType, Parser], dict[MessageType, Builder]]:
    """(parsers, builders) by message type, compiled once per process."""
    if not _PARSERS:
        parsers, builders = _compile()
        _BUILDERS.update(builders)
        _PARSERS.update(parsers)
    return _PARSERS, _BUILDERS


def try_parse(message_type: MessageType, body: bytes) -> Message | None:
    """The message, or None when the fast path is not sure (the layout must then decide)."""
    try:
        return _PARSERS[message_type](body)
    except KeyError:
        if not _PARSERS:
            compiled()
            return try_parse(message_type, body)
        return None
    except Exception:  # noqa: BLE001 - any doubt goes to the declared layout
        return None


def try_build(message: Message) -> bytes | None:
    """The body, or None when the fast path is not sure (the layout must then decide)."""
    try:
        return _BUILDERS[message.TYPE](message)  # type: ignore[arg-type]
    except KeyError:
        if not _BUILDERS:
            compiled()
            return try_build(message)
        return None
    except Exception:  # noqa: BLE001 - any doubt goes to the declared layout
        return None
