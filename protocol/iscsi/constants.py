"""The numbers of iSCSI (RFC 7143): opcodes, stages, status classes, reasons, limits."""

from __future__ import annotations

import enum

#: Every PDU starts with a 48-octet Basic Header Segment.
BHS_SIZE = 48
#: Length of a header or data digest (CRC32C).
DIGEST_SIZE = 4
#: The "no tag" value of Initiator and Target Transfer Tags.
RESERVED_TAG = 0xFFFFFFFF
#: RFC 7143 is version 0x00 of the protocol.
ISCSI_VERSION = 0x00
#: Largest DataSegmentLength any side may declare (2**24 - 1) and the RFC's bounds.
MAX_DATA_SEGMENT = 0xFFFFFF
MIN_RECV_DATA_SEGMENT = 512
MAX_BURST_LIMIT = 0xFFFFFF
#: Largest text value (most keys) and largest Text/Login data segment we accept.
MAX_TEXT_VALUE = 255
MAX_TEXT_DATA = 64 * 1024
#: Size of the SCSI Command PDU's CDB field; longer CDBs go in an extended-CDB AHS.
CDB_FIELD_SIZE = 16


class Opcode(enum.IntEnum):
    # initiator to target
    NOP_OUT = 0x00
    SCSI_COMMAND = 0x01
    TMF_REQUEST = 0x02
    LOGIN_REQUEST = 0x03
    TEXT_REQUEST = 0x04
    DATA_OUT = 0x05
    LOGOUT_REQUEST = 0x06
    SNACK_REQUEST = 0x10
    # target to initiator
    NOP_IN = 0x20
    SCSI_RESPONSE = 0x21
    TMF_RESPONSE = 0x22
    LOGIN_RESPONSE = 0x23
    TEXT_RESPONSE = 0x24
    DATA_IN = 0x25
    LOGOUT_RESPONSE = 0x26
    R2T = 0x31
    ASYNC_MESSAGE = 0x32
    REJECT = 0x3F


class Stage(enum.IntEnum):
    """CSG/NSG of a Login PDU."""

    SECURITY = 0
    OPERATIONAL = 1
    FULL_FEATURE = 3


class LoginStatus(enum.IntEnum):
    """Status-Class << 8 | Status-Detail of a Login Response."""

    SUCCESS = 0x0000
    TARGET_MOVED_TEMPORARILY = 0x0101
    INITIATOR_ERROR = 0x0200
    AUTHENTICATION_FAILURE = 0x0201
    AUTHORIZATION_FAILURE = 0x0202
    NOT_FOUND = 0x0203
    TARGET_REMOVED = 0x0204
    UNSUPPORTED_VERSION = 0x0205
    TOO_MANY_CONNECTIONS = 0x0206
    MISSING_PARAMETER = 0x0207
    CANT_INCLUDE_IN_SESSION = 0x0208
    SESSION_TYPE_NOT_SUPPORTED = 0x0209
    SESSION_DOES_NOT_EXIST = 0x020A
    INVALID_DURING_LOGIN = 0x020B
    TARGET_ERROR = 0x0300
    SERVICE_UNAVAILABLE = 0x0301
    OUT_OF_RESOURCES = 0x0302


class ResponseCode(enum.IntEnum):
    """The Response field of a SCSI Response."""

    COMPLETED = 0x00
    TARGET_FAILURE = 0x01


class RejectReason(enum.IntEnum):
    DATA_DIGEST_ERROR = 0x02
    SNACK_REJECT = 0x03
    PROTOCOL_ERROR = 0x04
    COMMAND_NOT_SUPPORTED = 0x05
    IMMEDIATE_COMMAND_REJECT = 0x06
    TASK_IN_PROGRESS = 0x07
    INVALID_DATA_ACK = 0x08
    INVALID_PDU_FIELD = 0x09
    LONG_OP_REJECT = 0x0A
    DEPRECATED = 0x0B
    WAITING_FOR_LOGOUT = 0x0C


class TmfFunction(enum.IntEnum):
    ABORT_TASK = 1
    ABORT_TASK_SET = 2
    CLEAR_ACA = 3
    CLEAR_TASK_SET = 4
    LOGICAL_UNIT_RESET = 5
    TARGET_WARM_RESET = 6
    TARGET_COLD_RESET = 7
    TASK_REASSIGN = 8


class TmfResult(enum.IntEnum):
    FUNCTION_COMPLETE = 0
    TASK_DOES_NOT_EXIST = 1
    LUN_DOES_NOT_EXIST = 2
    TASK_STILL_ALLEGIANT = 3
    REASSIGNMENT_NOT_SUPPORTED = 4
    NOT_SUPPORTED = 5
    AUTHORIZATION_FAILED = 6
    REJECTED = 255


class LogoutReason(enum.IntEnum):
    CLOSE_SESSION = 0
    CLOSE_CONNECTION = 1
    REMOVE_FOR_RECOVERY = 2


class LogoutResult(enum.IntEnum):
    SUCCESS = 0
    CID_NOT_FOUND = 1
    RECOVERY_NOT_SUPPORTED = 2
    CLEANUP_FAILED = 3


class TaskAttribute(enum.IntEnum):
    UNTAGGED = 0
    SIMPLE = 1
    ORDERED = 2
    HEAD_OF_QUEUE = 3
    ACA = 4
