"""Who may report an error to a token, and who may reset a drive from its VOP.

Error reports (version 3): each entry of a WRITE_EKT/WRITE_OKT carries a report key,
HKDF of the drive's PCkey over the CSN and the write's timestamp. The KMS knows every
PCkey; a drive always holds its own, even when its device keys are out of sync, so it
can always authenticate a report about the write it pulled from, and nobody else can.
A report key opens nothing: it only MACs ERROR_REPORTs of one drive about one write.

VOP Reset Drive (version 3): a drive host is given a service credential (a secret file,
one per host); each drive's reset key is HKDF(credential, CSN). A reset carries the
challenge its VOP connection was handed and an HMAC over it, so a captured reset is
worth nothing on any other connection.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from .constants import (
    CSN_SIZE,
    KEY_ID_SIZE,
    REPORT_KEY_SIZE,
    REPORT_MAC_SIZE,
    SERVICE_CREDENTIAL_SIZE,
    VOP_CHALLENGE_SIZE,
    VOP_MAC_SIZE,
    ErrorCode,
)
from .envelope import derive
from .messages import ErrorReport

_LABEL_REPORT = b"t10k-v3 error-report key"
_DOMAIN_REPORT = b"t10k-v3 error-report"
_LABEL_VOP = b"t10k-v3 vop reset key"
_DOMAIN_VOP = b"t10k-v3 vop reset"


def _csn(csn: bytes) -> bytes:
    if len(csn) != CSN_SIZE:
        raise ValueError(f"a CSN is {CSN_SIZE} octets, got {len(csn)}")
    return csn


# --- error reports -------------------------------------------------------------


def report_key(pckey: bytes, csn: bytes, write_timestamp: int) -> bytes:
    """The key a drive MACs its reports about one token write with (KMS and drive alike)."""
    return derive(pckey, _LABEL_REPORT + struct.pack(">8sQ", _csn(csn), write_timestamp))


def report_mac(key: bytes, csn: bytes, error_code: ErrorCode, key_id: bytes, write_timestamp: int) -> bytes:
    if len(key) != REPORT_KEY_SIZE or len(key_id) != KEY_ID_SIZE:
        raise ValueError(f"a report key is {REPORT_KEY_SIZE} octets and a key ID {KEY_ID_SIZE}")
    signed = _DOMAIN_REPORT + struct.pack(">8sI8sQ", _csn(csn), int(error_code), key_id, write_timestamp)
    return hmac.new(key, signed, hashlib.sha256).digest()[:REPORT_MAC_SIZE]


def verify_report_mac(key: bytes, csn: bytes, error_code: ErrorCode, key_id: bytes, write_timestamp: int,
                      mac: bytes) -> bool:
    return hmac.compare_digest(report_mac(key, csn, error_code, key_id, write_timestamp), mac)


def signed_report(pckey: bytes, csn: bytes, error_code: ErrorCode, key_id: bytes, write_timestamp: int) -> ErrorReport:
    """The ERROR_REPORT a drive sends about the token write of ``write_timestamp``."""
    key = report_key(pckey, csn, write_timestamp)
    return ErrorReport(csn, error_code, key_id, write_timestamp, report_mac(key, csn, error_code, key_id, write_timestamp))


# --- VOP Reset Drive -------------------------------------------------------------


def vop_reset_key(credential: bytes, csn: bytes) -> bytes:
    """One drive's reset key, derived from its host's service credential."""
    if len(credential) != SERVICE_CREDENTIAL_SIZE:
        raise ValueError(f"a service credential is {SERVICE_CREDENTIAL_SIZE} octets, got {len(credential)}")
    return derive(credential, _LABEL_VOP + _csn(csn))


def vop_reset_mac(key: bytes, csn: bytes, challenge: bytes) -> bytes:
    if len(challenge) != VOP_CHALLENGE_SIZE:
        raise ValueError(f"a VOP challenge is {VOP_CHALLENGE_SIZE} octets")
    return hmac.new(key, _DOMAIN_VOP + _csn(csn) + challenge, hashlib.sha256).digest()[:VOP_MAC_SIZE]


def verify_vop_reset_mac(key: bytes, csn: bytes, challenge: bytes, mac: bytes) -> bool:
    return hmac.compare_digest(vop_reset_mac(key, csn, challenge), mac)
