"""Mutations of well-formed frames, for fuzzing live daemons (tests/attacks/test_fuzz.py).

Seeds come from the shared vectors (tests/vectors) and the iSCSI samples; every offset used
here is derived from the catalogue (``protocol.layouts.Header``, ``MessageType``), never
written down, so the fuzz follows the layouts as they change.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from protocol import DecodeError, decode_header
from protocol.constants import MAX_BODY_LENGTH, PROTOCOL_VERSION, RETIRED_VERSIONS, MessageType
from protocol.layouts import Header, body_cap

#: Values that sit on the edges of fields of 1, 2, 4 and 8 octets.
EDGES = {
    1: (0, 1, 0x7F, 0x80, 0xFF),
    2: (0, 1, 0x7FFF, 0x8000, 0xFFFF),
    4: (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF),
    8: (0, 1, 2**63 - 1, 2**63, 2**64 - 1),
}


@dataclass(frozen=True)
class Field:
    offset: int
    size: int


def _header_fields() -> dict[str, Field]:
    fields, offset = {}, 0
    for sub in Header.subcons:
        size = sub.sizeof()
        fields[sub.name] = Field(offset, size)
        offset += size
    return fields


HEADER = _header_fields()
HEADER_SIZE = Header.sizeof()


def _put(data: bytearray, where: Field, value: int) -> None:
    data[where.offset:where.offset + where.size] = (value % 2 ** (8 * where.size)).to_bytes(where.size, "big")


def _get(data: bytes, where: Field) -> int:
    return int.from_bytes(data[where.offset:where.offset + where.size], "big")


def _trailer_size(header: bytes) -> int:
    """Octets after the body (an authenticated frame's trailer), as the codec counts them."""
    try:
        info = decode_header(header)
    except DecodeError:
        return 0
    return info.remaining - info.body_length


class Mutator:
    """Turns a seed frame into a mutated one; deterministic for a given ``random.Random``.

    Framed mutations (``framed=True``) know the 16-octet header of our protocol: they swap
    types, versions, flags and length fields, and often mend the length after changing the
    body so that the body parser, not the length check, meets the damage.
    """

    def __init__(self, rng: random.Random, seeds: list[bytes], *, framed: bool = True) -> None:
        self.rng, self.seeds, self.framed = rng, seeds, framed
        generic: list[Callable[[bytearray], None]] = [
            self.flip, self.flip, self.set_byte, self.truncate, self.extend, self.insert, self.delete,
            self.edge_int, self.edge_int, self.duplicate, self.splice,
        ]
        framed_ops: list[Callable[[bytearray], None]] = [
            self.type_swap, self.version, self.flags, self.sequence, self.magic, self.length_field,
            self.length_field, self.body_only, self.body_only, self.body_only,
        ]
        self.ops = generic + (framed_ops if framed else [])
        self.types = [int(t) for t in MessageType]
        self.counts: dict[str, int] = {}

    def __call__(self, seed: bytes | None = None) -> bytes:
        data = bytearray(seed if seed is not None else self.rng.choice(self.seeds))
        for _ in range(self.rng.choice((1, 1, 1, 2, 2, 3, 4))):
            op = self.rng.choice(self.ops)
            self.counts[op.__name__] = self.counts.get(op.__name__, 0) + 1
            op(data)
        return bytes(data)

    # --- anywhere in the frame ---------------------------------------------

    def _at(self, data: bytearray) -> int:
        return self.rng.randrange(len(data)) if data else 0

    def flip(self, data: bytearray) -> None:
        if data:
            data[self._at(data)] ^= 1 << self.rng.randrange(8)

    def set_byte(self, data: bytearray) -> None:
        if data:
            data[self._at(data)] = self.rng.choice((0, 0xFF, 0x7F, 0x80, self.rng.randrange(256)))

    def truncate(self, data: bytearray) -> None:
        del data[self.rng.randrange(len(data) + 1):]

    def extend(self, data: bytearray) -> None:
        data += self.rng.randbytes(self.rng.choice((1, 2, 4, 8, 16, 64, 300)))

    def insert(self, data: bytearray) -> None:
        at = self.rng.randrange(len(data) + 1)
        data[at:at] = self.rng.randbytes(self.rng.randint(1, 16))

    def delete(self, data: bytearray) -> None:
        at = self.rng.randrange(len(data) + 1)
        del data[at:at + self.rng.randint(1, 16)]

    def edge_int(self, data: bytearray) -> None:
        """An edge value written over an integer-sized run: counts, lengths, enums, timestamps."""
        size = self.rng.choice((1, 2, 4, 8))
        if len(data) < size:
            return
        _put(data, Field(self.rng.randrange(len(data) - size + 1), size), self.rng.choice(EDGES[size]))

    def duplicate(self, data: bytearray) -> None:
        """A run of the frame repeated: list entries twice, strings doubled."""
        if data:
            at = self._at(data)
            data[at:at] = data[at:at + self.rng.randint(1, 64)]

    def splice(self, data: bytearray) -> None:
        """The head of this frame, the tail of another."""
        other = self.rng.choice(self.seeds)
        cut = self.rng.randrange(min(len(data), len(other)) + 1)
        data[cut:] = other[cut:]

    # --- the header of our frames ----------------------------------------

    def _header(self, data: bytearray) -> bool:
        return len(data) >= HEADER_SIZE

    def type_swap(self, data: bytearray) -> None:
        if self._header(data):
            _put(data, HEADER["type"], self.rng.choice(self.types + [0, 0xFF, self.rng.randrange(256)]))

    def version(self, data: bytearray) -> None:
        if self._header(data):
            choices = [PROTOCOL_VERSION + 1, 0, 0xFF, *RETIRED_VERSIONS]
            _put(data, HEADER["version"], self.rng.choice(choices))

    def flags(self, data: bytearray) -> None:
        if self._header(data):
            _put(data, HEADER["flags"], self.rng.choice((0, 1, 2, 3, 4, 0x8000, 0xFFFF, self.rng.randrange(2**16))))

    def sequence(self, data: bytearray) -> None:
        if self._header(data):
            _put(data, HEADER["sequence"], self.rng.choice(EDGES[HEADER["sequence"].size]))

    def magic(self, data: bytearray) -> None:
        if self._header(data):
            where = HEADER["magic"]
            data[where.offset + self.rng.randrange(where.size)] ^= 1 << self.rng.randrange(8)

    def length_field(self, data: bytearray) -> None:
        """The declared body length: off by a little, at a cap, past a cap, or huge."""
        if not self._header(data):
            return
        actual = len(data) - HEADER_SIZE
        try:
            cap = body_cap(MessageType(_get(data, HEADER["type"])))
        except ValueError:
            cap = MAX_BODY_LENGTH
        choices = (0, actual - 1, actual + 1, actual + 40, cap, cap + 1, MAX_BODY_LENGTH, MAX_BODY_LENGTH + 1, 2**32 - 1)
        _put(data, HEADER["body_length"], self.rng.choice(choices))

    def body_only(self, data: bytearray) -> None:
        """Damage the body, then mend the declared length, so the body's parser meets it."""
        if not self._header(data):
            return
        head, body = data[:HEADER_SIZE], bytearray(data[HEADER_SIZE:])
        trailer = _trailer_size(bytes(head))  # an authenticated frame's trailer stays a trailer
        keep = body[len(body) - trailer:] if 0 < trailer <= len(body) else b""
        del body[len(body) - len(keep):]
        self.rng.choice((self.flip, self.set_byte, self.truncate, self.extend, self.insert, self.delete,
                         self.edge_int, self.duplicate))(body)
        _put(head, HEADER["body_length"], len(body))
        data[:] = head + body + keep
