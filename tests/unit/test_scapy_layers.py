"""The scapy layers and the construct catalogue produce and accept the same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import rdpcap, wrpcap

import protocol as p
from protocol.constants import DRIVE_LAN_PORT, TOKEN_MGMT_PORT, MessageType
from protocol.scapy_layers import BODY_LAYERS, T10K, T10KAuth, T10KSealed, to_scapy
from tests.vectors import load_pinned, sample_messages

SAMPLES = sample_messages()
PINNED = load_pinned()


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_scapy_builds_the_catalogue_bytes(message_type: MessageType) -> None:
    assert bytes(to_scapy(SAMPLES[message_type], sequence=7)).hex() == PINNED[message_type.name]


@pytest.mark.parametrize("message_type", list(MessageType), ids=lambda t: t.name)
def test_scapy_dissects_the_catalogue_bytes(message_type: MessageType) -> None:
    data = bytes.fromhex(PINNED[message_type.name])
    pkt = T10K(data)
    assert pkt.type == int(message_type) and pkt.sequence == 7
    body = pkt[BODY_LAYERS[message_type]]
    message = SAMPLES[message_type]
    for name in ("csn", "okt_timestamp", "key_id", "timestamp", "count", "block", "volser", "status"):
        if hasattr(message, name):
            expected = getattr(message, name)
            expected = expected.encode() if isinstance(expected, str) else int(expected) if isinstance(expected, int) \
                else expected
            assert getattr(body, name) == expected, name
    assert bytes(pkt) == data


def test_authenticated_frames_show_their_trailer() -> None:
    data = p.encode_authenticated(SAMPLES[MessageType.READ_STATUS], secret=bytes(32), counter=99)
    pkt = T10K(data)
    assert pkt[T10KAuth].counter == 99 and bytes(pkt) == data
    assert len(pkt[T10KSealed].sealed) == 16 and pkt[T10KAuth].nonce == data[-12:]  # the body: only its tag


def test_layers_are_bound_to_our_ports_and_survive_a_pcap(tmp_path: Path) -> None:
    udp = IP(src="127.0.0.21", dst="127.255.255.255") / UDP(sport=7011, dport=DRIVE_LAN_PORT) / \
        p.encode(SAMPLES[MessageType.KEYS_AVAILABLE])
    tcp = IP(src="127.0.0.1", dst="127.0.0.21") / TCP(sport=40000, dport=TOKEN_MGMT_PORT, flags="PA") / \
        (p.encode(SAMPLES[MessageType.READ_STATUS]) + p.encode(SAMPLES[MessageType.CLEAR_ERROR]))
    wrpcap(str(tmp_path / "x.pcap"), [udp, tcp])
    first, second = rdpcap(str(tmp_path / "x.pcap"))
    assert first[T10K].type == MessageType.KEYS_AVAILABLE
    assert first[BODY_LAYERS[MessageType.KEYS_AVAILABLE]].csn_count == 1
    assert second[T10K].type == MessageType.READ_STATUS  # the second frame of the segment is padding here
