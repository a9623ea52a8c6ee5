"""The struct-only pcap reader sees what scapy sees, in every file format a user may bring."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.utils import PcapNgWriter, PcapWriter, rdpcap

from protocol.pcapfile import PcapFormatError, Segment, read_segments

CAPTURES = sorted((Path(__file__).resolve().parents[2] / "captures").glob("*.pcap"))


def _scapy_segments(path: Path) -> list[Segment]:
    """The oracle: what the reader replaced."""
    out = []
    for pkt in rdpcap(str(path)):
        if IP not in pkt:
            continue
        ip = pkt[IP]
        for layer, name in ((UDP, "udp"), (TCP, "tcp")):
            if layer in pkt:
                t = pkt[layer]
                out.append(Segment(float(pkt.time), name, (ip.src, t.sport), (ip.dst, t.dport), bytes(t.payload)))
    return out


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.name)
def test_reference_captures_read_as_scapy_reads_them(path: Path) -> None:
    ours, theirs = list(read_segments(path)), _scapy_segments(path)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert (a.transport, a.src, a.dst, a.payload) == (b.transport, b.src, b.dst, b.payload)
        assert a.time == pytest.approx(b.time, abs=1e-6)


def _packets() -> list:  # type: ignore[type-arg]
    """The first packets of a reference capture, with a UDP and a TCP one among them."""
    packets = [p for p in rdpcap(str(CAPTURES[0]))][:40]
    assert any(UDP in p for p in packets) and any(TCP in p for p in packets)
    return packets


def _wrap(pkt, link: str):  # type: ignore[no-untyped-def]
    ip = pkt[IP]
    framed = {"ether": Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip,
              "vlan": Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / Dot1Q(vlan=7) / ip,
              "sll": CookedLinux(pkttype=0, lladdrtype=772, lladdrlen=6, src=b"\0" * 8, proto=0x0800) / ip}[link]
    framed.time = pkt.time
    return framed


@pytest.mark.parametrize("variant", ["ether", "vlan", "sll", "big-endian", "nanoseconds", "pcapng"])
def test_every_capture_format_gives_the_same_segments(tmp_path: Path, variant: str) -> None:
    packets = _packets()
    reference = tmp_path / "raw.pcap"
    with PcapWriter(str(reference), linktype=228) as w:
        for p in packets:
            w.write(p)
    path = tmp_path / f"{variant}.cap"
    if variant == "pcapng":
        with PcapNgWriter(str(path)) as w:
            for p in packets:
                w.write(_wrap(p, "ether"))
    else:
        link = variant if variant in ("ether", "vlan", "sll") else "ether"
        with PcapWriter(str(path), linktype={"sll": 113}.get(link, 1), endianness=">" if variant == "big-endian" else "",
                        nano=variant == "nanoseconds") as w:
            for p in packets:
                w.write(_wrap(p, link))
    expected, got = list(read_segments(reference)), list(read_segments(path))
    assert [(s.transport, s.src, s.dst, s.payload) for s in got] == [(s.transport, s.src, s.dst, s.payload) for s in expected]
    assert [round(s.time, 5) for s in got] == [round(s.time, 5) for s in expected]


def test_not_a_capture_is_named(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not a pcap\n")
    with pytest.raises(PcapFormatError, match="notes.txt is not a pcap or pcapng file"):
        list(read_segments(path))


def test_a_capture_cut_while_written_keeps_its_whole_packets(tmp_path: Path) -> None:
    whole = list(read_segments(CAPTURES[0]))
    cut = tmp_path / "cut.pcap"
    data = CAPTURES[0].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    got = list(read_segments(cut))
    assert 0 < len(got) < len(whole)
    assert got == whole[: len(got)]
