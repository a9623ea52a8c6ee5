"""A drive acknowledges only what is durable, checked with a real kill -9 (issue 13, finding 4;
issue 11: the host's one NVRAM store, group-committed).

A real token and a real drive host (``t10k`` processes); the test watches the loopback
wire (AF_PACKET: it runs as root in its own network namespace) and SIGKILLs the drive host
while KEY_ACKs reach the token. Every drive whose ACK was on the wire must then have what
it acknowledged in the host's NVRAM store on disk, where a restarted host reads it.

On a fast disk the old behaviour (ACK first, write in a thread) usually wins this race too;
tests/unit/test_drive_durable.py holds the write back to show the ACK waits for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
import time
from pathlib import Path

from drive_daemon.nvram import Nvram, decode_nvram
from drive_daemon.nvram_store import STORE_NAME, NvramStore
from drive_daemon.vop import vop_status
from kms_client import station
from kms_client.store import KmsStore
from protocol import KeyAck, decode
from protocol.constants import TOKEN_LAN_PORT, KeyKind, MessageType
from protocol.ids import ZERO_KEY_ID
from protocol.manufacturing import format_manufacturing, make_drives
from tests.integration.test_processes import FIRST_DRIVE_IP, TOKEN_IP, Daemon, addr, daemons, t10k  # noqa: F401

DRIVES = 6
ETH_P_ALL = 0x0003


def _stored(state: Path, pckeys: dict[bytes, bytes]) -> dict[bytes, Nvram]:
    """What a restarted host reads: every drive's NVRAM in the host's store."""
    store = NvramStore(state / STORE_NAME)
    try:
        rows = store.load_all()
    finally:
        store.close()
    return {csn: decode_nvram(rows[csn], csn, pckey) if csn in rows else Nvram() for csn, pckey in pckeys.items()}


def _acks_seen(sniffer: socket.socket, until: float, *, kind: KeyKind | None = None, timestamp: int | None = None,
               enough: int = 1) -> set[bytes]:
    """CSNs of KEY_ACK datagrams (of ``kind`` and ``timestamp`` if given) sent to the token before
    ``until``, or as soon as ``enough`` drives were seen."""
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
        if isinstance(message, KeyAck) and message.TYPE is MessageType.KEY_ACK and kind in (None, message.kind) \
                and timestamp in (None, message.timestamp):
            csns.add(message.csn)
            if len(csns) >= enough:
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
    stored = _stored(state, by_csn)
    for csn in acked:
        nvram = stored[csn]
        assert nvram.device_key is not None and nvram.device_key_id != ZERO_KEY_ID, (
            f"drive {csn.hex()} acknowledged its device key but its NVRAM on disk does not hold it")

    restarted = Daemon("drive", "run-many", "--manufacturing", str(made), "--first-ip", FIRST_DRIVE_IP,
                       "--state", str(state))
    daemons.append(restarted)
    for i, d in enumerate(drives):
        if bytes.fromhex(d["csn"]) in acked:
            status = json.loads(t10k("vop", "status", "--ip", addr(101 + i), "--json").stdout)
            assert status["status2"] == "Need OKT", status  # enabled: it kept the device key


POOL_DRIVES = 150  # a /24 from .101


async def _statuses(ips: list[str]) -> list[object]:
    return list(await asyncio.gather(*(vop_status(ip) for ip in ips)))


async def _wait_all(ips: list[str], predicate: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        statuses = await _statuses(ips)
        if all(predicate(s) for s in statuses):  # type: ignore[operator]
            return
        assert time.monotonic() < deadline, f"not every drive became {what} within {timeout_s} s"
        await asyncio.sleep(0.2)


async def test_a_kill_during_a_rekey_of_many_drives_leaves_every_stored_timestamp_one_acknowledged(
        tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    """A pool of 150 drives armed, a new OKT written, the drive host SIGKILLed while the ACKs of
    the new timestamp reach the token. Each drive's stored OKT timestamp is the one it acknowledged
    before (every drive was armed with it) or the new one; each whose new ACK was on the wire holds
    the new one; a restarted host serves them all and the pool re-arms."""
    made = make_drives(POOL_DRIVES, first_serial=0x5700_0000_0000_0d01)
    cd = tmp_path / "cd.json"
    cd.write_text(format_manufacturing(made))
    kms = KmsStore.create(tmp_path / "kms", dbkey=os.urandom(32), kms_id=bytes.fromhex("0a0b0c0d"))
    names = [f"drive-{i}" for i in range(POOL_DRIVES)]
    ips = [addr(101 + i) for i in range(POOL_DRIVES)]
    for name, m, ip in zip(names, made, ips, strict=True):
        kms.add_drive(name, m.csn, m.pckey, m.model, ip)
    (tmp_path / "tok.secret").write_text(kms.add_token("tok", TOKEN_IP, 7020).hex())
    daemons.append(Daemon("token", "run", "--ip", TOKEN_IP, "--state", str(tmp_path / "tok"),
                          "--secret-file", str(tmp_path / "tok.secret"), "--announce-interval", "0.3"))
    state = tmp_path / "drives"
    host_args = ("drive", "run-many", "--manufacturing", str(cd), "--first-ip", FIRST_DRIVE_IP, "--state", str(state))
    host = Daemon(*host_args)
    daemons.append(host)
    try:
        await station.write_ekt(kms, "tok", names, use_pckey=True)
        await _wait_all(ips, lambda s: s.encryption_enabled, "enrolled")
        kms.create_pool("P1")
        for name in names:
            kms.add_drive_to_pool("P1", name)
        kms.create_key_set("KS1")
        first_key = kms.create_key()
        kms.add_key_to_set("KS1", first_key)
        first = kms.set_mapping("P1", ["KS1"], first_key).timestamp
        await station.write_okt(kms, "tok", "P1")
        await _wait_all(ips, lambda s: s.okt_timestamp == first and s.led.name == "RED", "armed")

        kms.create_key_set("KS2")
        new_key = kms.create_key()
        kms.add_key_to_set("KS2", new_key)
        new = kms.set_mapping("P1", ["KS1", "KS2"], new_key).timestamp
        assert new > first
        sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        try:
            sniffer.bind(("lo", 0))
            sniffer.settimeout(0.05)
            await station.write_okt(kms, "tok", "P1")
            acked = _acks_seen(sniffer, time.monotonic() + 30, kind=KeyKind.MEDIA, timestamp=new,
                               enough=POOL_DRIVES // 4)
            host.proc.kill()  # SIGKILL, in the middle of the pool's ACKs
            host.proc.wait(10)
            acked |= _acks_seen(sniffer, time.monotonic() + 0.3, kind=KeyKind.MEDIA, timestamp=new,
                                enough=POOL_DRIVES)  # any already in flight
        finally:
            sniffer.close()
    finally:
        kms.close()
    assert len(acked) >= POOL_DRIVES // 4, f"only {len(acked)} drives acknowledged the new OKT within 30 s"
    assert len(acked) < POOL_DRIVES, "every drive had acknowledged before the kill: it did not land mid-rekey"

    stored = _stored(state, {m.csn: m.pckey for m in made})
    wrong = {c.hex(): n.okt_timestamp for c, n in stored.items() if n.okt_timestamp not in (first, new)}
    assert not wrong, f"stored OKT timestamps neither acknowledged one: {wrong}"
    lost = [c.hex() for c in acked if stored[c].okt_timestamp != new]
    assert not lost, f"{len(lost)} drive(s) acknowledged the new OKT but their stored timestamp is the old: {lost}"
    assert all(n.device_key is not None for n in stored.values())

    daemons.append(Daemon(*host_args))  # restarted from the same store: the token serves the new OKT again
    await _wait_all(ips, lambda s: s.okt_timestamp == new and s.led.name == "RED", "re-armed with the new OKT")
