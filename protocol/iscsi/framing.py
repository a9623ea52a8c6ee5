"""PDUs on a byte stream: padding, header and data digests (CRC32C), reassembly.

:func:`encode_pdu` returns the pieces to write (the data segment is not copied);
:class:`PduReader` reassembles PDUs from bytes fed in any fragments, either by
:meth:`PduReader.feed` or in place through :meth:`get_buffer`/:meth:`buffer_updated`
(the asyncio ``BufferedProtocol`` calls), and refuses a data segment longer than the
receiver declared (so a connection's buffer stays bounded).
"""

from __future__ import annotations

import struct

from crc32c import crc32c as _crc32c

from .constants import BHS_SIZE, DIGEST_SIZE
from .errors import IscsiDecodeError, IscsiReason
from .pdu import Pdu, ScsiCommand, decode_bhs, encode_bhs

_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")
_LE32 = struct.Struct("<I")


def crc32c(*parts: bytes | memoryview) -> int:
    crc = 0
    for part in parts:
        crc = _crc32c(part, value=crc)
    return crc


def digest(*parts: bytes | memoryview) -> bytes:
    """The 4-octet iSCSI digest of ``parts`` (CRC32C, least significant octet first)."""
    return _LE32.pack(crc32c(*parts))


def encode_pdu(pdu: Pdu, *, header_digest: bool = False, data_digest: bool = False) -> list[bytes | memoryview]:
    """The pieces of ``pdu`` on the wire, in order (write them all, or join them)."""
    data = pdu.data
    ahs = pdu.ahs if isinstance(pdu, ScsiCommand) else b""
    header = encode_bhs(pdu, len(data), len(ahs)) + ahs
    if header_digest:
        header += digest(header)
    if not data:
        return [header]
    pad = _PAD[len(data) % 4]
    tail = pad + digest(data, pad) if data_digest else pad
    return [header, data, tail] if tail else [header, data]


def encode_pdu_bytes(pdu: Pdu, *, header_digest: bool = False, data_digest: bool = False) -> bytes:
    return b"".join(encode_pdu(pdu, header_digest=header_digest, data_digest=data_digest))


class PduReader:
    """Reassembles PDUs; digests switch on when the login phase ends (set the attributes)."""

    def __init__(self, *, max_data_segment: int, header_digest: bool = False, data_digest: bool = False,
                 chunk: int = 256 * 1024) -> None:
        #: the largest data segment accepted (the MaxRecvDataSegmentLength we declared)
        self.max_data_segment = max_data_segment
        self.header_digest = header_digest
        self.data_digest = data_digest
        self._chunk = chunk
        self._buf = bytearray(chunk)
        self._start = 0
        self._end = 0

    # --- input ---------------------------------------------------------------

    def feed(self, data: bytes | memoryview) -> None:
        view = self.get_buffer(len(data))
        view[: len(data)] = data
        del view
        self.buffer_updated(len(data))

    def get_buffer(self, sizehint: int = -1) -> memoryview:
        """A writable view to receive into; call :meth:`buffer_updated` with the count written."""
        want = max(sizehint, self._chunk) if sizehint > 0 else self._chunk
        if len(self._buf) - self._end < want:
            pending = self._end - self._start
            if self._start:
                self._buf[:pending] = self._buf[self._start:self._end]
                self._start, self._end = 0, pending
            if len(self._buf) - self._end < want:
                self._buf.extend(bytes(want - (len(self._buf) - self._end)))
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int) -> None:
        self._end += nbytes

    @property
    def buffered(self) -> int:
        return self._end - self._start

    # --- output --------------------------------------------------------------

    def next_pdu(self) -> Pdu | None:
        """The next complete PDU, or None until more bytes arrive.

        Raises :class:`IscsiDecodeError`; unless its ``fatal`` is set, the bad PDU has
        been consumed and reading may go on.
        """
        avail = self._end - self._start
        if avail < BHS_SIZE:
            return None
        buf, start = self._buf, self._start
        ahs_length = buf[start + 4] * 4
        data_length = int.from_bytes(buf[start + 5:start + 8], "big")
        if data_length > self.max_data_segment:
            raise IscsiDecodeError(IscsiReason.TOO_LARGE, f"DataSegmentLength {data_length} > declared "
                                   f"MaxRecvDataSegmentLength {self.max_data_segment}",
                                   header=bytes(buf[start:start + BHS_SIZE]), fatal=True)
        hd = DIGEST_SIZE if self.header_digest else 0
        padded = (data_length + 3) & ~3
        dd = DIGEST_SIZE if self.data_digest and data_length else 0
        total = BHS_SIZE + ahs_length + hd + padded + dd
        if avail < total:
            return None
        self._start += total
        if self._start == self._end:
            self._start = self._end = 0
        header_end = start + BHS_SIZE + ahs_length
        view = memoryview(buf)
        header = bytes(view[start:start + BHS_SIZE])
        try:  # one copy of the data segment out of the receive buffer, no more
            if hd and view[header_end:header_end + hd] != digest(view[start:header_end]):
                raise IscsiDecodeError(IscsiReason.HEADER_DIGEST, "header digest does not match", header=header,
                                       fatal=True)
            data_start = header_end + hd
            data = bytes(view[data_start:data_start + data_length])
            if dd and view[data_start + padded:data_start + padded + dd] != digest(view[data_start:data_start + padded]):
                raise IscsiDecodeError(IscsiReason.DATA_DIGEST, "data digest does not match", header=header)
            ahs = bytes(view[start + BHS_SIZE:header_end])
        finally:
            view.release()  # the buffer must stay resizable
        return decode_bhs(header, data, ahs)
