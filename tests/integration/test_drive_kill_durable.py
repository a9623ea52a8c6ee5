"""A drive acknowledges only what is durable, checked with a real kill -9 (issue 13, finding 4).

A real token and a real drive host (``t10k`` processes); the test watches the loopback
wire (AF_PACKET: it runs as root in its own network namespace) and SIGKILLs the drive host
the moment the first KEY_ACK reaches the token. Every drive whose ACK was on the wire must
then have the new device key in its NVRAM on disk, where a restarted host reads it.

On a fast disk the old behaviour (ACK first, write in a thread) usually wins this race too;
tests/unit/test_drive_durable.py holds the write back to show the ACK waits for it.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from pathlib import Path

from drive_daemon.nvram import load_nvram
from protocol import KeyAck, decode
from protocol.constants import TOKEN_LAN_PORT, MessageType
from protocol.ids import ZERO_KEY_ID
from tests.integration.test_processes import FIRST_DRIVE_IP, TOKEN_IP, Daemon, addr, daemons, t10k  # noqa: F401

DRIVES = 6
ETH_P_ALL = 0x0003


def _acks_seen(sniffer: socket.socket, until: float) -> set[bytes]:
    """CSNs of KEY_ACK datagrams sent to the token before ``until`` (or the first, if sooner)."""
    csns: set[bytes] = set()
    while time.monotonic() < until:
        try:
            frame = sniffer.recv(65535)
        except (BlockingIOError, TimeoutError):
            continue
        ip = frame[14:]  # loopback frames carry a (zero) Ethernet header
        if len(ip) < 28 or ip[9] != socket.IPPROTO_UDP:
            continue
        ihl = (ip[0] & 0x0F) * 4
        dst_ip, (_, dst_port) = socket.inet_ntoa(ip[16:20]), struct.unpack("!HH", ip[ihl:ihl + 4])
        if dst_ip != TOKEN_IP or dst_port != TOKEN_LAN_PORT:
            continue
        payload = ip[ihl + 8:]
        try:
            message = decode(payload).message
        except Exception:  # noqa: BLE001 - not ours or truncated: skip it
            continue
        if isinstance(message, KeyAck) and message.TYPE is MessageType.KEY_ACK:
            csns.add(message.csn)
            return csns
    return csns


def test_every_drive_whose_ack_the_token_got_has_its_device_key_on_disk_after_kill_9(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    store = ["--store", str(tmp_path / "kms")]
    made = tmp_path / "made.json"
    t10k("drive", "manufacture", "--count", str(DRIVES), "--out", str(made), "--first-csn", "5700000000000c01")
    t10k("kms", "init", *store, "--kms-id", "0a0b0c0d", "--no-roles")
    drives = json.loads(made.read_text())
    for i, d in enumerate(drives):
        t10k("kms", "import-drive", *store, "--manufacturing", str(made), "--csn", d["csn"], "--name", f"drive-{i}",
             "--ip", addr(101 + i))
    t10k("kms", "add-token", *store, "--name", "tok", "--ip", TOKEN_IP, "--secret-out", str(tmp_path / "tok.secret"))
    daemons.append(Daemon("token", "run", "--ip", TOKEN_IP, "--state", str(tmp_path / "tok"),
                          "--secret-file", str(tmp_path / "tok.secret"), "--announce-interval", "0.3"))
    state = tmp_path / "drives"
    host = Daemon("drive", "run-many", "--manufacturing", str(made), "--first-ip", FIRST_DRIVE_IP, "--state", str(state))
    daemons.append(host)

    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    try:
        sniffer.bind(("lo", 0))
        sniffer.settimeout(0.05)
        names = [a for i in range(DRIVES) for a in ("--drive", f"drive-{i}")]
        out = json.loads(t10k("kms", "write-ekt", *store, "--token", "tok", *names, "--use-pckey", "--json").stdout)
        assert out["status"] == "OK"
        acked = _acks_seen(sniffer, time.monotonic() + 20)
        host.proc.kill()  # SIGKILL, the moment the first ACK is on the wire
        host.proc.wait(10)
        acked |= _acks_seen(sniffer, time.monotonic() + 0.3)  # any already in flight
    finally:
        sniffer.close()
    assert acked, "no KEY_ACK reached the token within 20 s"

    by_csn = {bytes.fromhex(d["csn"]): bytes.fromhex(d["pckey"]) for d in drives}
    for csn in acked:
        nvram = load_nvram(state, csn, by_csn[csn])  # what a restarted host reads
        assert nvram.device_key is not None and nvram.device_key_id != ZERO_KEY_ID, (
            f"drive {csn.hex()} acknowledged its device key but its NVRAM on disk does not hold it")

    restarted = Daemon("drive", "run-many", "--manufacturing", str(made), "--first-ip", FIRST_DRIVE_IP,
                       "--state", str(state))
    daemons.append(restarted)
    for i, d in enumerate(drives):
        if bytes.fromhex(d["csn"]) in acked:
            status = json.loads(t10k("vop", "status", "--ip", addr(101 + i), "--json").stdout)
            assert status["status2"] == "Need OKT", status  # enabled: it kept the device key
