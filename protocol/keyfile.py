"""Secrets a daemon is given in a file, as hexadecimal: a token's secret, a drive host's
service credential. One reading, so both refuse the same things the same way."""

from __future__ import annotations

from pathlib import Path


def read_hex_file(path: Path, size: int) -> bytes:
    """The ``size`` octets ``path`` holds as ``2 * size`` hex digits (whitespace around them
    allowed). Raises OSError when the file cannot be read, ValueError when it holds anything
    else (the caller says what the file should hold and where to get one)."""
    try:
        text = path.read_text().strip()
    except UnicodeDecodeError:
        raise ValueError("it is not text") from None
    try:
        octets = bytes.fromhex(text)
    except ValueError:
        raise ValueError("it is not hexadecimal") from None
    if len(octets) != size:
        raise ValueError(f"it holds {len(octets)} octets, not {size}")
    return octets
