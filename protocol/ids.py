"""Identifiers: key IDs (KMS ID + ordinal), CSNs, token IDs, and their text forms."""

from __future__ import annotations

import struct
from typing import Callable, TypeVar

from .constants import CSN_SIZE, KEY_ID_SIZE, KMS_ID_SIZE

ZERO_KEY_ID = bytes(KEY_ID_SIZE)
T = TypeVar("T")


def make_key_id(kms_id: bytes, ordinal: int) -> bytes:
    """A key ID unique across every KMS: the KMS ID, then the key's ordinal on it."""
    if len(kms_id) != KMS_ID_SIZE:
        raise ValueError(f"a KMS ID is {KMS_ID_SIZE} octets, got {len(kms_id)}")
    if not 0 < ordinal < 2**32:
        raise ValueError(f"a key ordinal is 1..2**32-1, got {ordinal}")
    return kms_id + struct.pack(">I", ordinal)


def split_key_id(key_id: bytes) -> tuple[bytes, int]:
    if len(key_id) != KEY_ID_SIZE:
        raise ValueError(f"a key ID is {KEY_ID_SIZE} octets, got {len(key_id)}")
    return key_id[:KMS_ID_SIZE], struct.unpack(">I", key_id[KMS_ID_SIZE:])[0]


def parse_hex(text: str, size: int, what: str) -> bytes:
    """Parse a hex string of exactly ``size`` octets, or say what is wrong with it."""
    cleaned = text.strip().replace(":", "").replace(" ", "")
    if len(cleaned) != 2 * size:
        raise ValueError(f"{what} must be {2 * size} hex digits, got {len(cleaned)}: {text!r}")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise ValueError(f"{what} must be hex digits 0-9a-f, got {text!r}") from None


def parse_csn(text: str) -> bytes:
    return parse_hex(text, CSN_SIZE, "a CSN")


def parse_key_id(text: str) -> bytes:
    return parse_hex(text, KEY_ID_SIZE, "a key ID")


def cli_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Wrap a parser for argparse ``type=``: its ValueError becomes a usage error with our message."""
    import argparse

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert
