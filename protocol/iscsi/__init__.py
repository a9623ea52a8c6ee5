"""iSCSI (RFC 7143), declared once for the target and the initiator: PDUs, framing with
digests, the text codec, parameter negotiation and CHAP. Pure: no sockets, no asyncio."""

from __future__ import annotations

from .chap import chap_response, check_response, decode_binary, encode_binary
from .constants import (
    BHS_SIZE,
    RESERVED_TAG,
    LoginStatus,
    LogoutReason,
    LogoutResult,
    Opcode,
    RejectReason,
    ResponseCode,
    Stage,
    TaskAttribute,
    TmfFunction,
    TmfResult,
)
from .errors import IscsiDecodeError, IscsiError, IscsiLocalError, IscsiReason
from .framing import PduReader, crc32c, digest, encode_pdu, encode_pdu_bytes
from .negotiation import DEFAULTS, SessionParams, accept_answers, respond
from .pdu import (
    PDU_CLASSES,
    R2T,
    AsyncMessage,
    DataIn,
    DataOut,
    LoginRequest,
    LoginResponse,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    Reject,
    ScsiCommand,
    ScsiResponse,
    Snack,
    TextRequest,
    TextResponse,
    TmfRequest,
    TmfResponse,
    decode_bhs,
    encode_bhs,
)
from .text import decode_text, encode_text

__all__ = [
    "chap_response", "check_response", "decode_binary", "encode_binary", "BHS_SIZE", "RESERVED_TAG", "LoginStatus",
    "LogoutReason", "LogoutResult", "Opcode", "RejectReason", "ResponseCode", "Stage", "TaskAttribute", "TmfFunction",
    "TmfResult", "IscsiDecodeError", "IscsiError", "IscsiLocalError", "IscsiReason", "PduReader", "crc32c", "digest",
    "encode_pdu", "encode_pdu_bytes", "DEFAULTS", "SessionParams", "accept_answers", "respond", "PDU_CLASSES", "R2T",
    "AsyncMessage", "DataIn", "DataOut", "LoginRequest", "LoginResponse", "LogoutRequest", "LogoutResponse", "NopIn",
    "NopOut", "Pdu", "Reject", "ScsiCommand", "ScsiResponse", "Snack", "TextRequest", "TextResponse", "TmfRequest",
    "TmfResponse", "decode_bhs", "encode_bhs", "decode_text", "encode_text",
]
