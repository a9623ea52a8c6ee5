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
from typing import BinaryIO, Iterator

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
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise PcapFormatError(f"cannot open {path}: {exc.strerror}") from None
    with fh:
        for when, linktype, data in _records(fh, path):
            ip = _ipv4(linktype, data)
            if ip is not None:
                segment = _transport(when, ip)
                if segment is not None:
                    yield segment


# --- file formats -------------------------------------------------------------------------


def _records(fh: BinaryIO, path: Path) -> Iterator[tuple[float, int, bytes]]:
    magic = fh.read(4)
    if magic in _PCAP_MAGICS:
        yield from _pcap(fh, path, *_PCAP_MAGICS[magic])
    elif magic == _PCAPNG_SHB:
        yield from _pcapng(fh, path)
    else:
        raise PcapFormatError(f"{path} is not a pcap or pcapng file (it starts with {magic.hex() or 'nothing'})")


def _pcap(fh: BinaryIO, path: Path, order: str, unit: float) -> Iterator[tuple[float, int, bytes]]:
    header = fh.read(20)
    if len(header) < 20:
        raise PcapFormatError(f"{path}: the pcap file header is cut short")
    linktype = struct.unpack(order + "HHiIII", header)[5] & 0x0FFFFFFF
    record = struct.Struct(order + "IIII")
    while True:
        head = fh.read(16)
        if len(head) < 16:
            return  # end of file (or a capture cut while it was written: keep what is whole)
        seconds, fraction, captured, _ = record.unpack(head)
        data = fh.read(captured)
        if len(data) < captured:
            return
        yield seconds + fraction * unit, linktype, data


def _pcapng(fh: BinaryIO, path: Path) -> Iterator[tuple[float, int, bytes]]:
    """Blocks: type (4), total length (4), body, total length (4); the section header's
    byte-order magic says how to read the numbers of its section."""
    order = "<"
    interfaces: list[tuple[int, float]] = []  # of this section: (linktype, seconds per tick)
    block_type = _PCAPNG_SHB  # its 4 octets were read to recognise the file
    while True:
        length_raw = fh.read(4)
        if block_type == _PCAPNG_SHB:
            byte_order = fh.read(4)
            order = {b"\x4d\x3c\x2b\x1a": "<", b"\x1a\x2b\x3c\x4d": ">"}.get(byte_order, "")
            if not order or len(length_raw) < 4:
                raise PcapFormatError(f"{path}: a pcapng section header without a valid byte-order magic")
            length = struct.unpack(order + "I", length_raw)[0]
            body = byte_order + fh.read(max(0, length - 12 - 4))
            interfaces, kind = [], None
        else:
            if len(length_raw) < 4:
                return
            kind = struct.unpack(order + "I", block_type)[0]
            length = struct.unpack(order + "I", length_raw)[0]
            body = fh.read(max(0, length - 12))
        if length < 12 or len(body) < length - 12 or len(fh.read(4)) < 4:
            return  # a block cut while the capture was written: keep what is whole
        if kind == 1 and len(body) >= 8:  # interface description
            interfaces.append((struct.unpack_from(order + "H", body)[0], _tick(body[8:], order)))
        elif kind == 6 and len(body) >= 20:  # enhanced packet
            iface, high, low, captured = struct.unpack_from(order + "IIII", body)
            if iface < len(interfaces):
                linktype, tick = interfaces[iface]
                yield ((high << 32) | low) * tick, linktype, body[20 : 20 + captured]
        elif kind == 3 and interfaces:  # simple packet: no timestamp
            yield 0.0, interfaces[0][0], body[4:]
        block_type = fh.read(4)
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


# --- link, network and transport layers ---------------------------------------------------


def _ipv4(linktype: int, data: bytes) -> bytes | None:
    """The IPv4 packet inside one captured frame, or None for anything else."""
    if linktype in (228, 101, 12, 14):  # raw IPv4, raw IP
        return data if data[:1] and data[0] >> 4 == 4 else None
    if linktype == 1:  # Ethernet, perhaps VLAN-tagged
        at = 12
        ethertype = int.from_bytes(data[at : at + 2], "big")
        while ethertype == _ETHERTYPE_VLAN:
            at += 4
            ethertype = int.from_bytes(data[at : at + 2], "big")
        return data[at + 2 :] if ethertype == _ETHERTYPE_IPV4 else None
    if linktype == 113:  # Linux cooked v1
        return data[16:] if int.from_bytes(data[14:16], "big") == _ETHERTYPE_IPV4 else None
    if linktype == 276:  # Linux cooked v2
        return data[20:] if int.from_bytes(data[0:2], "big") == _ETHERTYPE_IPV4 else None
    if linktype == 0:  # BSD loopback: the address family in the capturing host's order
        return data[4:] if data[:4] in (b"\x02\x00\x00\x00", b"\x00\x00\x00\x02") else None
    return None


def _transport(when: float, ip: bytes) -> Segment | None:
    if len(ip) < 20:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = int.from_bytes(ip[2:4], "big")
    flags_offset = int.from_bytes(ip[6:8], "big")
    if flags_offset & 0x3FFF or ihl < 20 or total < ihl:
        return None  # a fragment, or a broken header
    packet = ip[:total]
    src, dst = "%d.%d.%d.%d" % tuple(packet[12:16]), "%d.%d.%d.%d" % tuple(packet[16:20])
    body = packet[ihl:]
    if ip[9] == 17 and len(body) >= 8:
        sport, dport, length = struct.unpack_from(">HHH", body)
        return Segment(when, "udp", (src, sport), (dst, dport), body[8 : max(8, length)])
    if ip[9] == 6 and len(body) >= 20:
        sport, dport = struct.unpack_from(">HH", body)
        offset = (body[12] >> 4) * 4
        return Segment(when, "tcp", (src, sport), (dst, dport), body[offset:])
    return None
