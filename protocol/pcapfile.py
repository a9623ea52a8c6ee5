"""Read pcap and pcapng files with ``struct`` alone: the packets of a capture as IPv4
UDP datagrams and TCP segments.

``t10k pcap decode`` reads captures of whole pool rekeys (hundreds of thousands of
packets); scapy builds a layered object per packet and was most of the time spent. This
reader does only what decoding needs: the link layers a capture of this lab can have
(raw IPv4 as our daemons write it, Ethernet and Linux cooked as tcpdump and tshark write
them, BSD loopback), IPv4, UDP and TCP. IPv6 and IP fragments are skipped: the protocol
runs on IPv4 and its datagrams are never fragmented.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

Address = tuple[str, int]

_PCAP_MAGICS = {
    b"\xa1\xb2\xc3\xd4": (">", 1e-6), b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9), b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"
_ETHERTYPE_IPV4, _ETHERTYPE_VLAN = 0x0800, 0x8100


class PcapFormatError(ValueError):
    """The file is not a pcap or pcapng capture this reader understands."""


@dataclass(frozen=True)
class Segment:
    """One UDP datagram or TCP segment's payload, with its addresses."""

    time: float
    transport: str  # "udp" or "tcp"
    src: Address
    dst: Address
    payload: bytes


def read_segments(path: Path) -> Iterator[Segment]:
    """Every IPv4 UDP datagram and TCP segment in the file, in capture order."""
    for when, transport, src, dst, payload in segments(path):
        yield Segment(when, transport, src, dst, payload)


def segments(path: Path) -> Iterator[tuple[float, str, Address, Address, bytes]]:
    """:func:`read_segments` as plain tuples ``(time, transport, src, dst, payload)``: what a
    decoder of a whole capture reads, without an object per packet."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()  # one read: the frames decoded from a capture hold its octets anyway
    except OSError as exc:
        raise PcapFormatError(f"cannot open {path}: {exc.strerror}") from None
    names: dict[bytes, str] = {}  # dotted quads of this capture's addresses, made once each
    for when, linktype, buf, start, end in _records(data, path):
        ip = _ipv4(linktype, buf, start, end)
        if ip is not None:
            segment = _transport(when, buf, ip, end, names)
            if segment is not None:
                yield segment


# --- file formats: each record as (time, linktype, buffer, start, end) -------------------

Record = tuple[float, int, bytes, int, int]


def _records(data: bytes, path: Path) -> Iterator[Record]:
    magic = data[:4]
    if magic in _PCAP_MAGICS:
        yield from _pcap(data, path, *_PCAP_MAGICS[magic])
    elif magic == _PCAPNG_SHB:
        yield from _pcapng(data, path)
    else:
        raise PcapFormatError(f"{path} is not a pcap or pcapng file (it starts with {magic.hex() or 'nothing'})")


def _pcap(data: bytes, path: Path, order: str, unit: float) -> Iterator[Record]:
    if len(data) < 24:
        raise PcapFormatError(f"{path}: the pcap file header is cut short")
    linktype = struct.unpack_from(order + "HHiIII", data, 4)[5] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    at, size = 24, len(data)
    while at + 16 <= size:  # a record cut short ends the capture (cut while written: keep what is whole)
        seconds, fraction, captured, _ = record.unpack_from(data, at)
        start = at + 16
        at = start + captured
        if at > size:
            return
        yield seconds + fraction * unit, linktype, data, start, at


def _pcapng(data: bytes, path: Path) -> Iterator[Record]:
    """Blocks: type (4), total length (4), body, total length (4); the section header's
    byte-order magic says how to read the numbers of its section."""
    order = "<"
    interfaces: list[tuple[int, float]] = []  # of this section: (linktype, seconds per tick)
    block_type = _PCAPNG_SHB  # its 4 octets were read to recognise the file
    at, size = 4, len(data)

    def read(n: int) -> bytes:
        nonlocal at
        chunk = data[at : at + n]
        at = min(at + n, size)
        return chunk

    while True:
        length_raw = read(4)
        if block_type == _PCAPNG_SHB:
            byte_order = read(4)
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(byte_order, "")
            if not order or len(length_raw) < 4:
                raise PcapFormatError(f"{path}: a pcapng section header without a valid byte-order magic")
            length = struct.unpack(order + "I", length_raw)[0]
            body = byte_order + read(max(0, length - 12 - 4))
            interfaces, kind = [], None
        else:
            if len(length_raw) < 4:
                return
            kind = struct.unpack(order + "I", block_type)[0]
            length = struct.unpack(order + "I", length_raw)[0]
            body = read(max(0, length - 12))
        if length < 12 or len(body) < length - 12 or len(read(4)) < 4:
            return  # a block cut while the capture was written: keep what is whole
        if kind == 1 and len(body) >= 8:  # interface description
            interfaces.append((struct.unpack_from(order + "H", body)[0], _tick(body[8:], order)))
        elif kind == 6 and len(body) >= 20:  # enhanced packet
            iface, high, low, captured = struct.unpack_from(order + "IIII", body)
            if iface < len(interfaces):
                linktype, tick = interfaces[iface]
                yield ((high << 32) | low) * tick, linktype, body, 20, min(20 + captured, len(body))
        elif kind == 3 and interfaces:  # simple packet: no timestamp
            yield 0.0, interfaces[0][0], body, 4, len(body)
        block_type = read(4)
        if len(block_type) < 4:
            return


def _tick(options: bytes, order: str) -> float:
    """Seconds per timestamp unit, from an interface's if_tsresol option (default: microseconds)."""
    at = 0
    while at + 4 <= len(options):
        code, size = struct.unpack_from(order + "HH", options, at)
        if code == 0:
            break
        if code == 9 and size >= 1:
            value = options[at + 4]
            return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
        at += 4 + (size + 3) // 4 * 4
    return 1e-6


# --- link, network and transport layers: offsets into the record's buffer ----------------

_RAW_IP = frozenset((228, 101, 12, 14))  # raw IPv4, raw IP
_IPV4 = struct.Struct(">BxHxxHxB2x4s4s")  # version and IHL, total length, flags and offset, protocol, addresses
_PORTS = struct.Struct(">HHH")


def _ipv4(linktype: int, buf: bytes, start: int, end: int) -> int | None:
    """Where the IPv4 packet inside one captured frame starts, or None for anything else."""
    if linktype in _RAW_IP:
        return start if start < end and buf[start] >> 4 == 4 else None
    if linktype == 1:  # Ethernet, perhaps VLAN-tagged
        at = start + 12
        ethertype = _u16(buf, at, end)
        while ethertype == _ETHERTYPE_VLAN:
            at += 4
            ethertype = _u16(buf, at, end)
        return at + 2 if ethertype == _ETHERTYPE_IPV4 else None
    if linktype == 113:  # Linux cooked v1
        return start + 16 if _u16(buf, start + 14, end) == _ETHERTYPE_IPV4 else None
    if linktype == 276:  # Linux cooked v2
        return start + 20 if _u16(buf, start, end) == _ETHERTYPE_IPV4 else None
    if linktype == 0:  # BSD loopback: the address family in the capturing host's order
        return start + 4 if buf[start : min(start + 4, end)] in (b"\x02\x00\x00\x00", b"\x00\x00\x00\x02") else None
    return None


def _u16(buf: bytes, at: int, end: int) -> int:
    """A big-endian 16-bit field, as int.from_bytes reads what there is of it (0 when none)."""
    return int.from_bytes(buf[at : min(at + 2, end)], "big")


def _transport(when: float, buf: bytes, ip: int, end: int,
               names: dict[bytes, str]) -> tuple[float, str, Address, Address, bytes] | None:
    if end - ip < 20:
        return None
    first, total, flags_offset, protocol, src, dst = _IPV4.unpack_from(buf, ip)
    ihl = (first & 0x0F) * 4
    if flags_offset & 0x3FFF or ihl < 20 or total < ihl:
        return None  # a fragment, or a broken header
    stop = min(end, ip + total)  # the packet without any link-layer padding after it
    body = ip + ihl
    src_name = names.get(src) or names.setdefault(src, "%d.%d.%d.%d" % tuple(src))
    dst_name = names.get(dst) or names.setdefault(dst, "%d.%d.%d.%d" % tuple(dst))
    if protocol == 17 and stop - body >= 8:
        sport, dport, length = _PORTS.unpack_from(buf, body)
        return when, "udp", (src_name, sport), (dst_name, dport), buf[body + 8 : min(stop, body + max(8, length))]
    if protocol == 6 and stop - body >= 20:
        sport, dport, _ = _PORTS.unpack_from(buf, body)
        offset = (buf[body + 12] >> 4) * 4
        return when, "tcp", (src_name, sport), (dst_name, dport), buf[body + offset : stop]
    return None
