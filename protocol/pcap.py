"""Pcap helpers: write what daemons send and receive with IP/UDP/TCP framing, read it back.

:class:`CaptureWriter` has the daemons' tap signature, so ``--capture FILE`` needs no root:
it builds IPv4 packets itself (linktype 228, raw IPv4). TCP payloads get per-flow sequence
numbers and are cut into segments of at most 1,448 octets, as a real stack would send them.
:func:`read_capture` reads the file with :mod:`protocol.pcapfile` (no scapy), reassembles TCP
per flow and decodes every frame with the catalogue; TCP 3260 is iSCSI (a host and a drive's
tape LUN), read as PDUs with protocol.iscsi. With pcapfile, the modules of protocol/ that
touch files; scapy is imported only to write.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .codec import Frame, decode, decode_body, decode_header
from .describe import describe  # noqa: F401 - its former home; callers may import it from here
from .constants import HEADER_SIZE, ISCSI_PORT, HeaderFlag, MessageType
from .errors import DecodeError
from .messages import Message
from .pcapfile import PcapFormatError, segments

Address = tuple[str, int]
MSS = 1448
_AUTHENTICATED = int(HeaderFlag.AUTHENTICATED)
_DISTINCT_BODIES = 1 << 18  # bodies remembered per capture (each is held by its frames anyway)
_DEDUPE_WINDOW = 4096


class CaptureWriter:
    """Append every datagram and TCP payload to a pcap; call ``close()`` (or use ``with``)."""

    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        from scapy.utils import PcapWriter

        self.path = path
        self._writer = PcapWriter(str(path), linktype=228, sync=True)
        self._clock = clock
        self._seq: dict[tuple[Address, Address], int] = defaultdict(lambda: 1000)
        self._sent: OrderedDict[bytes, int] = OrderedDict()  # datagrams captured leaving, not yet seen arriving
        self.packets = 0

    @classmethod
    def optional(cls, path: Path | None) -> CaptureWriter | None:
        """A writer for ``--capture FILE``, or None when no capture was asked for."""
        return None if path is None else cls(path)

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, direction: str, transport: str, src: Address, dst: Address, data: bytes) -> None:
        """The tap. When several daemons share one writer (a lab), a frame captured leaving one
        is not captured again arriving at another; repeats (a token re-announcing) are kept."""
        digest = hashlib.blake2b(f"{transport}{src}{dst}".encode() + data, digest_size=16).digest()
        if direction == "in" and self._sent.get(digest):
            self._sent[digest] -= 1
            return
        if direction == "out":
            self._sent[digest] = self._sent.get(digest, 0) + 1
            self._sent.move_to_end(digest)
            if len(self._sent) > _DEDUPE_WINDOW:
                self._sent.popitem(last=False)
        self.write(transport, src, dst, data)

    def write(self, transport: str, src: Address, dst: Address, data: bytes) -> None:
        from scapy.layers.inet import IP, TCP, UDP

        now = self._clock()
        if transport == "udp":
            self._writer.write(_stamp(IP(src=src[0], dst=dst[0]) / UDP(sport=src[1], dport=dst[1]) / data, now))
            self.packets += 1
            return
        flow = (src, dst)
        for i in range(0, max(len(data), 1), MSS):
            segment = data[i : i + MSS]
            seq = self._seq[flow]
            ack = self._seq[(dst, src)]
            pkt = IP(src=src[0], dst=dst[0]) / TCP(sport=src[1], dport=dst[1], flags="PA", seq=seq, ack=ack) / segment
            self._writer.write(_stamp(pkt, now))
            self._seq[flow] = (seq + len(segment)) % 2**32
            self.packets += 1

    def close(self) -> None:
        self._writer.close()


def _stamp(pkt: Any, when: float) -> Any:
    pkt.time = when
    return pkt


class CaptureError(ValueError):
    """A file that is not a pcap we can read."""


@dataclass(frozen=True)
class CapturedFrame:
    time: float
    transport: str
    src: Address
    dst: Address
    frame: Frame | None
    error: str | None = None
    raw: bytes = b""
    #: On TCP 3260: the iSCSI PDU (``frame`` is None; so is ``error`` unless the PDU was bad).
    iscsi: Any = None


def read_capture(path: Path) -> list[CapturedFrame]:
    """Every frame in a capture, in order: UDP datagrams as they are, TCP reassembled per flow."""
    frames: list[CapturedFrame] = []
    streams: dict[tuple[Address, Address], bytearray] = defaultdict(bytearray)
    iscsi: dict[tuple[Address, Address], Any] = {}  # per flow: a PduReader, or None once it is lost
    decoded = _Decoder().captured
    append = frames.append
    try:
        for when, transport, src, dst, payload in segments(path):
            if transport == "udp":
                append(decoded(when, "udp", src, dst, payload))
            elif ISCSI_PORT in (src[1], dst[1]):
                frames += _iscsi_pdus(iscsi, when, src, dst, payload)
            else:
                frames += _stream_frames(streams[(src, dst)], decoded, when, src, dst, payload)
    except PcapFormatError as exc:
        raise CaptureError(str(exc)) from None
    return frames


def _stream_frames(buffer: bytearray, decoded: Callable[..., CapturedFrame], when: float, src: Address, dst: Address,
                   payload: bytes) -> list[CapturedFrame]:
    """The frames a TCP segment completes in its flow's buffer."""
    out: list[CapturedFrame] = []
    buffer += payload
    while len(buffer) >= HEADER_SIZE:
        try:
            need = HEADER_SIZE + decode_header(bytes(buffer[:HEADER_SIZE])).remaining
        except DecodeError as exc:
            out.append(CapturedFrame(when, "tcp", src, dst, None, str(exc), bytes(buffer)))
            buffer.clear()
            break
        if len(buffer) < need:
            break
        out.append(decoded(when, "tcp", src, dst, bytes(buffer[:need])))
        del buffer[:need]
    return out


class _Decoder:
    """:func:`protocol.codec.decode` for a whole capture, parsing each distinct body once: a
    rekey capture repeats most of them (a drive retries KEY_REQUEST and KEY_ACK with the same
    body; ~7,000 distinct bodies in ~26,600 frames at 1,000 drives). Messages are immutable,
    so frames with equal bodies share one."""

    def __init__(self) -> None:
        self.bodies: dict[tuple[MessageType, bytes], Message] = {}

    def __call__(self, data: bytes) -> Frame:
        info = decode_header(data)  # a bad header: the codec's error, as decode would raise it
        if int(info.flags) & _AUTHENTICATED or len(data) != HEADER_SIZE + info.body_length:
            return decode(data)  # sealed, or a length error: all the codec's own
        key = (info.message_type, data[HEADER_SIZE:])
        message = self.bodies.get(key)
        if message is None:
            message = decode_body(info.message_type, key[1])  # what decode does with this body
            if len(self.bodies) < _DISTINCT_BODIES:
                self.bodies[key] = message
        return Frame(message, info.sequence, info.flags, None, data)

    def captured(self, when: float, transport: str, src: Address, dst: Address, data: bytes) -> CapturedFrame:
        try:
            return CapturedFrame(when, transport, src, dst, self(data), None, data)
        except DecodeError as exc:
            return CapturedFrame(when, transport, src, dst, None, str(exc), data)


#: Largest data segment RFC 7143 allows (MaxRecvDataSegmentLength is at most 2**24 - 1).
_MAX_ISCSI_SEGMENT = 2**24 - 1


def _iscsi_pdus(readers: dict[tuple[Address, Address], Any], when: float, src: Address, dst: Address,
                payload: bytes) -> list[CapturedFrame]:
    """The iSCSI PDUs a segment completes. Digests are not known from a capture alone: a flow
    that does not parse without them gives one error and is not read further."""
    from .iscsi import IscsiDecodeError, PduReader

    flow = (src, dst)
    if flow not in readers:
        readers[flow] = PduReader(max_data_segment=_MAX_ISCSI_SEGMENT)
    reader = readers[flow]
    if reader is None:
        return []
    reader.feed(payload)
    out: list[CapturedFrame] = []
    while True:
        try:
            pdu = reader.next_pdu()
        except IscsiDecodeError as exc:
            out.append(CapturedFrame(when, "tcp", src, dst, None, f"iSCSI: {exc}", payload))
            if exc.fatal:
                readers[flow] = None
                return out
            continue
        if pdu is None:
            return out
        out.append(CapturedFrame(when, "tcp", src, dst, None, None, b"", pdu))
