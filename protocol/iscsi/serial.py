"""32-bit serial number arithmetic (RFC 1982) for CmdSN, StatSN, DataSN and R2TSN."""

from __future__ import annotations

_HALF = 2**31


def sn_lte(a: int, b: int) -> bool:
    """a <= b in serial number arithmetic."""
    return a == b or ((b - a) & 0xFFFFFFFF) < _HALF


def sn_add(a: int, n: int) -> int:
    return (a + n) & 0xFFFFFFFF
