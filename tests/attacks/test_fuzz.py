"""Fuzz every port of a live lab with at least 100,000 mutated frames each (issue 13).

One token, four drives and a KMS run in a process of their own (tests/attacks/lab.py),
enrolled and armed. This process is the attacker on the drive LAN, the KMS LAN and the SAN:
it mutates the shared vectors (tests/vectors, and the iSCSI samples of tests/unit/iscsi) by
bit flips, truncation, extension, edge values, spliced frames, swapped types, versions,
flags and length fields, and by damaged bodies whose length is mended so the body parser
meets them. Every loop is bounded in count and in time.

After each port the lab must still be whole: its process alive, every daemon's tasks and
sockets up, its memory bounded, the daemons' error counters moved by the fuzz, and a fresh
OKT (a new key mapped to the pool) arming every drive.

The rates are printed (``pytest -s``); docs/SECURITY.md quotes a run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import time
from typing import Any, Callable, Iterator

import pytest

import protocol as p
from host.iscsi_initiator import InitiatorConnection
from protocol.constants import (
    DRIVE_PORT,
    HEADER_SIZE,
    ISCSI_PORT,
    TOKEN_LAN_PORT,
    TOKEN_MGMT_PORT,
    VOP_PORT,
    MessageType,
    ScsiOp,
    drive_iqn,
)
from protocol.iscsi import NopOut, ScsiCommand, TextRequest, encode_pdu_bytes
from protocol.codec import SealedBody
from protocol.layouts import MANAGEMENT_BODY_CAPS
from tests.unit.iscsi.test_pdu import SAMPLES as ISCSI_SAMPLES
from tests.vectors import sample_messages

from .lab import LabInfo, LabProcess
from .mutate import Mutator
from .senders import (
    Run,
    ask_unit_ready,
    connect,
    datagrams,
    drain_until_closed,
    iscsi_login,
    one_frame_per_connection,
)

pytestmark = [pytest.mark.network, pytest.mark.timeout(900)]

#: T10K_FUZZ_FRAMES lowers it for a quick look while working on a daemon; the suite runs the full count.
FRAMES_PER_PORT = int(os.environ.get("T10K_FUZZ_FRAMES", "100000"))
#: No port's fuzz runs longer than this, whatever happens (the count above is asserted separately).
#: A TCP port needs about 40 s of the lab's CPU for its 100,000 frames; on a machine busy with other
#: suites the lab gets a share of a CPU, hence the margin.
SECONDS_PER_PORT = 600.0
#: How much the lab process may grow over the whole fuzz (RSS), in KiB...
GROWTH_BOUND_KIB = 64 * 1024
#: ...and how far above its start its peak may have been (a command may declare a 64 MiB transfer).
PEAK_BOUND_KIB = 128 * 1024
SEED = 13
#: Authentic frames (under the token's secret) of mutated messages, on top of the forged ones.
AUTHENTIC_FRAMES = 1_000

#: Message types each port is meant to hear, by name: a port is fuzzed with every vector, these twice as often.
PREFERRED = {
    "drive LAN broadcast": ("KEYS_AVAILABLE", "CLEAR_KEYS"),
    "drive unicast": ("DEVICE_KEY_PACKAGE", "MEDIA_KEY_PACKAGE", "NO_PACKAGE"),
    "token LAN": ("KEY_REQUEST", "KEY_ACK", "ERROR_REPORT"),
    "token management": ("WRITE_EKT", "WRITE_OKT", "READ_STATUS", "CLEAR_ERROR", "RESYNC"),
    "VOP": ("VOP_STATUS_REQUEST", "VOP_LOAD", "VOP_UNLOAD", "VOP_CHALLENGE_REQUEST", "VOP_RESET_DRIVE"),
}


def _seeds(port: str, extra: list[bytes] = ()) -> list[bytes]:  # type: ignore[assignment]
    messages = sample_messages()
    frames = [p.encode(m, sequence=7) for m in messages.values()]
    preferred = [p.encode(m, sequence=7) for t, m in messages.items() if t.name in PREFERRED[port]]
    return frames + preferred + list(extra)


def _total(counter: dict[str, int]) -> int:
    return sum(counter.values())


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcess]:
    with LabProcess(tmp_path_factory.mktemp("fuzzlab")) as running:
        yield running


def _moved(before: dict[str, Any], after: dict[str, Any], path: str = "") -> dict[str, int]:
    """Every counter that changed, by its dotted path, and by how much."""
    moved: dict[str, int] = {}
    for key, value in after.items():
        was = before.get(key, {} if isinstance(value, dict) else 0)
        if isinstance(value, dict):
            moved |= _moved(was, value, f"{path}{key}.")
        elif isinstance(value, int) and value != was:
            moved[f"{path}{key}"] = value - was
    return moved


def _still_whole(lab: LabProcess, before: dict[str, Any], run: Run) -> dict[str, Any]:
    """The checks every port ends with; returns the counters after."""
    assert lab.alive, f"the lab process died during the {run.port} fuzz: {lab.log_tail()}"
    run.lab_cpu_s = lab.cpu_seconds() - before["cpu_s"]
    run.attacker_cpu_s = time.process_time() - before["attacker_cpu_s"]
    health = lab.ask("health")
    assert all(health["token_tasks"].values()), f"a token task ended: {health}"
    assert all(health["drives"].values()), f"a drive stopped serving: {health}"
    assert health["persist_error"] is None, health
    after = lab.ask("counters")
    print(f"\n  {run}\n  moved: {_moved(before, after)}")
    memory = lab.memory_kib()
    grown = memory["VmRSS"] - lab.baseline["VmRSS"]
    print(f"  lab RSS {memory['VmRSS']} KiB (peak {memory['VmHWM']}), grown {grown} KiB since start")
    assert grown < GROWTH_BOUND_KIB, f"the lab grew by {grown} KiB during the fuzz"
    peak = memory["VmHWM"] - lab.baseline["VmRSS"]
    assert peak < PEAK_BOUND_KIB, f"the lab's peak was {peak} KiB above its start"
    fresh = lab.ask("rearm", timeout_s=90)
    print(f"  a fresh OKT armed every drive in {fresh['seconds']:.1f} s")
    assert {d["led"] for d in fresh["drives"].values()} == {"RED"}, fresh
    assert {d["write_key_id"] for d in fresh["drives"].values()} == {fresh["key_id"]}, fresh
    return after


# --- the drive LAN: broadcast, unicast, the token's LAN port -----------------------------


@pytest.mark.parametrize("port", ["drive LAN broadcast", "drive unicast", "token LAN"])
def test_datagram_port(lab: LabProcess, port: str) -> None:
    info = lab.info
    assert info is not None
    rng = random.Random(f"{SEED}-{port}")
    mutate = Mutator(rng, _seeds(port))
    if port == "drive LAN broadcast":
        def frame() -> tuple[bytes, tuple[str, int]]:
            return mutate(), (info.broadcast, info.lan_port)
        received: Callable[[dict], int] = lambda c: c["drives"]  # noqa: E731
    elif port == "drive unicast":
        def frame() -> tuple[bytes, tuple[str, int]]:
            return mutate(), (rng.choice(info.drive_ips), DRIVE_PORT)
        received = lambda c: c["drives"]  # noqa: E731
    else:
        def frame() -> tuple[bytes, tuple[str, int]]:
            return mutate(), (info.token_ip, TOKEN_LAN_PORT)
        received = lambda c: c["token"]  # noqa: E731
    before = lab.ask("counters") | {"cpu_s": lab.cpu_seconds(), "attacker_cpu_s": time.process_time()}
    run = datagrams(lab, Run(port), frame, source=info.host(250), received=received, count=FRAMES_PER_PORT,
                    deadline=time.monotonic() + SECONDS_PER_PORT)
    after = _still_whole(lab, before, run)
    assert run.sent >= FRAMES_PER_PORT and run.delivered >= FRAMES_PER_PORT, run
    side = "token" if port == "token LAN" else "drives"
    assert _total(after[side]["decode_errors"]) - _total(before[side]["decode_errors"]) > run.sent // 4, after[side]
    if port == "token LAN":
        assert after["token"]["errors_held"] == 0, "a mutated ERROR_REPORT was recorded (finding 8)"


# --- TCP: the token's management port and the drives' VOP ------------------------------


def _authentic(message: p.Message, secret: bytes, counter: list[int]) -> bytes:
    counter[0] = max(counter[0] + 1, time.time_ns() // 1000)
    return p.encode_authenticated(message, secret=secret, counter=counter[0])


async def _authentic_session(info: LabInfo, mutate: Mutator, counter: list[int], count: int) -> dict[str, int]:
    """Mutated messages that still decode, sent as the KMS would (under the token's secret, a
    fresh counter each), on one connection: the token's handling past its MAC check. Returns
    the answers by kind; every one must be an authentic reply."""
    answers: dict[str, int] = {}
    reader, writer = await connect(info.token_ip, TOKEN_MGMT_PORT, info.host(199))
    try:
        for _ in range(count):
            for _attempt in range(1000):
                data = mutate()
                try:
                    message = p.decode(data[:HEADER_SIZE + p.decode_header(data).remaining]).message
                    if isinstance(message, SealedBody) or message.TYPE is MessageType.RESYNC:
                        continue  # nothing to re-seal; a RESYNC without the live challenge is refused by design
                    frame = _authentic(message, info.token_secret, counter)
                    break
                except (p.DecodeError, p.EncodeError):
                    continue
            writer.write(frame)
            header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 10)
            reply = p.decode(header + await asyncio.wait_for(reader.readexactly(p.decode_header(header).remaining), 10))
            reply = reply.open(info.token_secret)
            assert reply.counter == counter[0], reply
            kind = type(reply.message).__name__
            if isinstance(reply.message, p.MgmtResult):
                write = message.TYPE in MANAGEMENT_BODY_CAPS
                kind = f"{'write' if write else 'other'} {reply.message.status.name}"
            answers[kind] = answers.get(kind, 0) + 1
    finally:
        writer.close()
    return answers


async def _raise_floor(info: LabInfo, counter: list[int]) -> None:
    reader, writer = await connect(info.token_ip, TOKEN_MGMT_PORT, info.host(198))
    try:
        writer.write(_authentic(p.ReadStatus(), info.token_secret, counter))
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 10)
        reply = p.decode(header + await asyncio.wait_for(reader.readexactly(p.decode_header(header).remaining), 10))
        assert isinstance(reply.open(info.token_secret).message, p.TokenStatus)
    finally:
        writer.close()


def test_token_management_port(lab: LabProcess) -> None:
    """Forged frames, each on its own connection (the token drops a peer at its first bad MAC),
    seeded with the vectors and with authentic frames under the token's own secret."""
    info = lab.info
    assert info is not None
    counter = [0]
    authentic = [_authentic(m, info.token_secret, counter) for t, m in sample_messages().items()
                 if t in MANAGEMENT_BODY_CAPS or t.name in PREFERRED["token management"]]
    mutate = Mutator(random.Random(f"{SEED}-mgmt"), _seeds("token management", authentic))
    to = (info.token_ip, TOKEN_MGMT_PORT)
    # The seeds were made, never sent: a mutation that leaves one whole would be a first, authentic
    # use of its counter. One authentic READ_STATUS above them all makes every copy a replay.
    asyncio.run(_raise_floor(info, counter))
    before = lab.ask("counters") | {"cpu_s": lab.cpu_seconds(), "attacker_cpu_s": time.process_time()}
    # 8 source addresses x 7 workers: under the per-peer (8) and total (64) caps, so every frame is read.
    sources = [info.host(200 + i) for i in range(8)]
    run = one_frame_per_connection(Run("token management"), lambda w: (mutate(), to), sources=sources, workers=56,
                                   count=FRAMES_PER_PORT, deadline=time.monotonic() + SECONDS_PER_PORT)
    accepted = asyncio.run(_authentic_session(info, mutate, counter, AUTHENTIC_FRAMES))
    print(f"\n  authentic frames of mutated messages, answered: {accepted}")
    after = _still_whole(lab, before, run)
    assert run.sent >= FRAMES_PER_PORT and run.connect_failures == 0, run
    assert sum(accepted.values()) == AUTHENTIC_FRAMES, accepted
    token_before, token_after = before["token"], after["token"]
    refused = token_after["events"].get("ManagementRefused", 0) - token_before["events"].get("ManagementRefused", 0)
    errors = _total(token_after["decode_errors"]) - _total(token_before["decode_errors"])
    assert refused > run.sent // 4 and errors > run.sent // 10, (refused, errors, token_after)
    written = token_after["events"].get("Written", 0) - token_before["events"].get("Written", 0)
    assert written == accepted.get("write OK", 0), (written, accepted)  # only the authentic writes, no forgery
    assert token_after["mgmt_refused"].get("total_cap", 0) == token_before["mgmt_refused"].get("total_cap", 0)


def test_vop_port(lab: LabProcess) -> None:
    """One request per connection, as the VOP serves them, spread over the four drives.

    Mutations that are still a well-formed VOP_RESET_DRIVE are sent too: without the drive
    host's service credential and the connection's challenge each is refused (finding 11),
    so the fresh OKT at the end still arms every drive."""
    info = lab.info
    assert info is not None
    mutate = Mutator(random.Random(f"{SEED}-vop"), _seeds("VOP"))

    def frame(w: int) -> tuple[bytes, tuple[str, int]] | None:
        return mutate(), (info.drive_ips[w % len(info.drive_ips)], VOP_PORT)

    before = lab.ask("counters") | {"cpu_s": lab.cpu_seconds(), "attacker_cpu_s": time.process_time()}
    # Worker w talks to drive w % 4 from source w % 16: 12 workers per drive, 3 per source address on a
    # drive, under the per-peer (4) and per-drive (16) caps, so every frame is read.
    sources = [info.host(150 + i) for i in range(16)]
    run = one_frame_per_connection(Run("VOP"), frame, sources=sources, workers=48, count=FRAMES_PER_PORT,
                                   deadline=time.monotonic() + SECONDS_PER_PORT)
    after = _still_whole(lab, before, run)
    assert run.sent >= FRAMES_PER_PORT, run
    assert run.connect_failures == 0 and run.replies > run.sent // 2, run
    errors = _total(after["drives"]["decode_errors"]) - _total(before["drives"]["decode_errors"])
    assert errors > run.sent // 4, after["drives"]
    assert _total(after["drives"]["vop_refused"]) > _total(before["drives"]["vop_refused"])


# --- iSCSI: mutated PDUs inside real sessions, and mutated logins ------------------------


def _iscsi_seeds(cmdsn: int, expstatsn: int) -> list[bytes]:
    """The iSCSI samples, and a command of every operation code the drive knows, in this session's numbering."""
    seeds = []
    for pdu in ISCSI_SAMPLES:
        fields = {f.name for f in dataclasses.fields(pdu)}
        numbers = {k: v for k, v in (("cmdsn", cmdsn), ("expstatsn", expstatsn)) if k in fields}
        seeds.append(encode_pdu_bytes(dataclasses.replace(pdu, **numbers)))
    for i, op in enumerate(ScsiOp):
        size = {0: 6, 1: 10, 2: 10, 4: 16, 5: 12}.get(int(op) >> 5, 16)  # SAM's group code gives the CDB length
        cdb = bytes([int(op)]) + bytes(size - 1)
        seeds.append(encode_pdu_bytes(ScsiCommand(itt=i, cmdsn=cmdsn + i, expstatsn=expstatsn, read=True,
                                                  expected_length=512, cdb=cdb.ljust(16, b"\0"))))
    seeds.append(encode_pdu_bytes(NopOut(immediate=True, itt=99, cmdsn=cmdsn, expstatsn=expstatsn, data=b"fuzz")))
    seeds.append(encode_pdu_bytes(TextRequest(itt=98, cmdsn=cmdsn, expstatsn=expstatsn, data=b"SendTargets=All\0")))
    return seeds


def _login_seeds(target: str) -> list[bytes]:
    """The first login PDU our initiator sends, for a normal session and for discovery."""
    seeds = []
    for name in (target, None):
        initiator = InitiatorConnection(initiator="iqn.2026-11.org.t10k-lab:fuzz", target=name)
        initiator.start_login()
        seeds.append(b"".join(bytes(piece) for piece in initiator.data_to_send()))
    return seeds


def test_iscsi_port(lab: LabProcess) -> None:
    info = lab.info
    assert info is not None
    rng = random.Random(f"{SEED}-iscsi")
    burst, workers = 48, 8
    run = Run("iSCSI")
    sources = [info.host(120 + i) for i in range(workers)]
    deadline = time.monotonic() + SECONDS_PER_PORT

    async def worker(w: int) -> None:
        i = w
        while run.sent < FRAMES_PER_PORT and time.monotonic() < deadline:
            i += workers
            csn = info.drive_csns[i % len(info.drive_csns)]
            ip = info.drive_ips[i % len(info.drive_ips)]
            try:
                if i % (8 * workers) < workers:  # one connection in 8: mutated logins, before any session
                    reader, writer = await connect(ip, ISCSI_PORT, sources[w])
                    seeds = _login_seeds(drive_iqn(csn)) + _iscsi_seeds(1, 0)
                    run.note("mutated login")
                else:
                    reader, writer, initiator = await iscsi_login(ip, ISCSI_PORT, sources[w], drive_iqn(csn))
                    seeds = _iscsi_seeds(initiator.cmdsn, initiator.expstatsn)
            except (OSError, TimeoutError) as exc:
                run.connect_failures += 1
                run.note(f"login {type(exc).__name__}")
                continue
            run.delivered += 1
            mutate = Mutator(rng, seeds, framed=False)
            pdus = [mutate() for _ in range(burst)]
            run.sent += len(pdus)
            try:
                writer.write(b"".join(pdus))
                writer.write_eof()
                await writer.drain()
            except ConnectionError:
                run.note("reset while sending")
            if await drain_until_closed(reader, 3.0):
                run.replies += 1
            writer.close()

    async def fuzz() -> None:
        await asyncio.gather(*(worker(w) for w in range(workers)))

    before = lab.ask("counters") | {"cpu_s": lab.cpu_seconds(), "attacker_cpu_s": time.process_time()}
    started = time.monotonic()
    asyncio.run(fuzz())
    run.seconds = time.monotonic() - started
    after = _still_whole(lab, before, run)
    assert run.sent >= FRAMES_PER_PORT and run.connect_failures == 0, run
    assert _total(after["iscsi"]) > _total(before["iscsi"]), after["iscsi"]

    async def every_target_answers() -> list[int]:
        return [(await ask_unit_ready(ip, ISCSI_PORT, info.host(119), drive_iqn(csn))).status
                for ip, csn in zip(info.drive_ips, info.drive_csns, strict=True)]

    assert len(asyncio.run(every_target_answers())) == len(info.drive_ips)  # GOOD or CHECK CONDITION: it answered
