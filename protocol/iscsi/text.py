"""The key=value text of Login and Text PDUs (RFC 7143 section 6).

Each pair is ``key=value`` followed by a NUL octet. Keys are at most 63 characters of
letters, digits, ``.``, ``-``, ``+``, ``@``, ``_``; values are UTF-8.
"""

from __future__ import annotations

import re

from .constants import MAX_TEXT_DATA
from .errors import IscsiDecodeError, IscsiReason

_KEY = re.compile(r"[A-Za-z0-9.\-+@_]{1,63}")
#: Longest value accepted (CHAP challenges and responses are long binary values).
MAX_VALUE = 8192


def encode_text(pairs: list[tuple[str, str]] | dict[str, str]) -> bytes:
    items = pairs.items() if isinstance(pairs, dict) else pairs
    return b"".join(f"{k}={v}".encode() + b"\0" for k, v in items)


def decode_text(data: bytes | memoryview) -> list[tuple[str, str]]:
    """The pairs in ``data``, in order; raises :class:`IscsiDecodeError` on anything else."""
    data = bytes(data)
    if len(data) > MAX_TEXT_DATA:
        raise IscsiDecodeError(IscsiReason.BAD_TEXT, f"{len(data)} octets of text; at most {MAX_TEXT_DATA}")
    if not data:
        return []
    if not data.endswith(b"\0"):
        raise IscsiDecodeError(IscsiReason.BAD_TEXT, "text does not end with a NUL octet")
    pairs = []
    for raw in data[:-1].split(b"\0"):
        key, sep, value = raw.partition(b"=")
        try:
            k, v = key.decode("ascii"), value.decode("utf-8")
        except UnicodeDecodeError:
            raise IscsiDecodeError(IscsiReason.BAD_TEXT, f"pair {raw[:40]!r} is not UTF-8") from None
        if not sep or not _KEY.fullmatch(k):
            raise IscsiDecodeError(IscsiReason.BAD_TEXT, f"{raw[:40]!r} is not key=value")
        if len(value) > MAX_VALUE:
            raise IscsiDecodeError(IscsiReason.BAD_TEXT, f"value of {k} is {len(value)} octets")
        pairs.append((k, v))
    return pairs
