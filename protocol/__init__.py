"""The t10k wire protocol: message catalogue, framing, crypto envelope, constants.

Pure: no sockets, no asyncio, no files (except the pcap helpers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import constants
from .codec import Frame, HeaderInfo, Opened, authenticate, open_frame, decode, decode_body, decode_header, encode, encode_authenticated, encode_body, frame_body, frame_header
from .csn_filter import CsnFilter
from .errors import AuthenticationError, CryptoError, DecodeError, DecodeReason, EncodeError, ProtocolError, UnwrapError
from .messages import *  # noqa: F403
from .messages import MESSAGE_CLASSES, Message
from .transport import BROADCAST_HOST, Address, Transmit

if TYPE_CHECKING:  # imported on first use (__getattr__ below)
    from . import envelope, reportauth

__all__ = [
    "constants", "envelope", "reportauth", "Frame", "HeaderInfo", "Opened", "authenticate", "open_frame", "decode", "decode_body", "decode_header", "encode",
    "encode_authenticated", "encode_body", "frame_body", "frame_header", "CsnFilter", "AuthenticationError", "CryptoError",
    "DecodeError", "DecodeReason", "EncodeError", "ProtocolError", "UnwrapError", "MESSAGE_CLASSES", "Message", "BROADCAST_HOST", "Address", "Transmit",
]


def __getattr__(name: str) -> object:
    """``protocol.envelope`` and ``protocol.reportauth`` on first use: they import cryptography,
    which a decoder of plain frames (``t10k pcap decode``) does not need."""
    if name in ("envelope", "reportauth"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
