"""Where each drive's package lies inside a WRITE_EKT/WRITE_OKT body, as received.

A token serves every package exactly as the KMS built and sealed it: it keeps the octets
it received instead of encoding each decoded package again (10,000 packages, ~23 MB, per
OKT). Every message has exactly one encoding (trailing octets are an error), so the
package of entry *i* is a run of the body whose length follows from the decoded entry;
the sizes below come from the layouts of :mod:`protocol.layouts`, and the walk must land
exactly on the announcement that closes the body, with each run starting with its
entry's CSN, or the body is refused.
"""

from __future__ import annotations

from .errors import DecodeError, DecodeReason
from .layouts import (
    ClearAuthorizationLayout,
    DeviceKeyPackageLayout,
    KeyId,
    Timestamp,
    WrappedMediaKeyLayout,
    WrappedReceiptLayout,
)
from .layouts import Csn as CsnLayout
from .messages import RECEIPT_HASH_SIZE, Announcement, WriteEkt, WriteOkt
from .constants import REPORT_KEY_SIZE, SIGNATURE_SIZE

_DEVICE_PACKAGE = DeviceKeyPackageLayout.sizeof()
#: A media-key package before its keys: CSN, timestamp, two key IDs, the wrapped receipt, the key count (u8).
_MEDIA_HEAD = CsnLayout.sizeof() + Timestamp.sizeof() + 2 * KeyId.sizeof() + WrappedReceiptLayout.sizeof() + 1
_MEDIA_KEY = WrappedMediaKeyLayout.sizeof()
#: After an entry's package: receipt hash, report key, the clear-authorisation count (u8).
_ENTRY_TAIL = RECEIPT_HASH_SIZE + REPORT_KEY_SIZE + 1
_CLEAR = ClearAuthorizationLayout.sizeof()
#: Entry count (u32) of a write.
_COUNT = 4


def _announcement_size(a: Announcement) -> int:
    """csn_count (u32), the filter's hash count (u8), its bits (u16-prefixed) and the signature."""
    return 4 + 1 + 2 + len(a.csn_filter.bits) + SIGNATURE_SIZE


def package_octets(message: WriteEkt | WriteOkt, body: bytes) -> list[bytes]:
    """Each entry's package octets, in entry order, cut from ``body``: the body ``message`` was
    decoded from. Raises DecodeError if they are not where the layouts put them."""
    if isinstance(message, WriteEkt):
        offset = Timestamp.sizeof() + _COUNT
    else:
        offset = 2 + len(message.pool.encode("utf8")) + Timestamp.sizeof() + _COUNT
    packages = []
    for entry in message.entries:
        package = entry.package
        size = _DEVICE_PACKAGE if isinstance(message, WriteEkt) else \
            _MEDIA_HEAD + len(package.media_keys) * _MEDIA_KEY  # type: ignore[union-attr]
        octets = body[offset : offset + size]
        if octets[: CsnLayout.sizeof()] != package.csn:
            raise DecodeError(DecodeReason.BAD_FIELD,
                              f"{message.TYPE.name}: the package of CSN {package.csn.hex()} is not where its layout puts it")
        packages.append(octets)
        offset += size + _ENTRY_TAIL + len(entry.clear_authorizations) * _CLEAR
    if offset + _announcement_size(message.announcement) != len(body):
        raise DecodeError(DecodeReason.LENGTH_MISMATCH,
                          f"{message.TYPE.name}: its packages do not end where its announcement starts")
    return packages
