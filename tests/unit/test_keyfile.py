"""Secrets read from hex files (protocol/keyfile.py): what is refused, and why, before any daemon starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.keyfile import read_hex_file


def test_hex_with_whitespace_around_it_is_read(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("  " + "ab" * 32 + "\n")
    assert read_hex_file(tmp_path / "k", 32) == b"\xab" * 32


@pytest.mark.parametrize(("content", "why"), [
    (b"\xff\xfe\x00binary", "not text"),
    (b"not hex at all", "not hexadecimal"),
    (b"abcd\n", "holds 2 octets, not 32"),
    (b"ab" * 33, "holds 33 octets, not 32"),
    (b"", "holds 0 octets, not 32"),
])
def test_anything_else_is_refused_with_the_reason(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "k").write_bytes(content)
    with pytest.raises(ValueError, match=why):
        read_hex_file(tmp_path / "k", 32)


def test_a_missing_file_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_hex_file(tmp_path / "absent", 32)
