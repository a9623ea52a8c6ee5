"""CHAP for iSCSI login (RFC 7143 section 12.1.3, RFC 1994): MD5 only (CHAP_A=5)."""

from __future__ import annotations

import base64
import hmac

from cryptography.hazmat.primitives import hashes

#: The only CHAP algorithm we offer or accept: MD5.
CHAP_MD5 = "5"
#: Challenge length we send (RFC 7143 asks for challenges as long as the response, at least).
CHALLENGE_SIZE = 16


def chap_response(identifier: int, secret: bytes, challenge: bytes) -> bytes:
    """MD5(identifier octet || secret || challenge)."""
    digest = hashes.Hash(hashes.MD5())
    digest.update(bytes([identifier & 0xFF]) + secret + challenge)
    return digest.finalize()


def check_response(identifier: int, secret: bytes, challenge: bytes, response: bytes) -> bool:
    return hmac.compare_digest(chap_response(identifier, secret, challenge), response)


def encode_binary(value: bytes) -> str:
    return "0x" + value.hex()


def decode_binary(value: str) -> bytes:
    """A binary value in hex (0x...) or base64 (0b...); ValueError otherwise."""
    prefix, body = value[:2].lower(), value[2:]
    if prefix == "0x":
        if len(body) % 2:
            body = "0" + body
        return bytes.fromhex(body)
    if prefix == "0b":
        return base64.b64decode(body, validate=True)
    raise ValueError(f"{value[:20]!r} is not a 0x or 0b binary value")
