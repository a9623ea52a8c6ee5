"""A token write changes the KMS only with the token's confirmed answer (issue 12).

Each case runs a real token daemon (``t10k token run``, its own process) on loopback,
sometimes behind a small TCP proxy that misbehaves on purpose, and compares a dump of
every KMS table but the audit trail before and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from kms_client import intents, station
from kms_client.errors import TokenRefused, TokenUnreachable, WriteUnsettled, WrongSecret
from kms_client.keyadmin import set_backupkey
from kms_client.push import request
from protocol import open_frame
from kms_client.store import KmsStore
from lab.addresses import free_net
from protocol import MgmtResult, ReadStatus
from token_daemon.memory import MemoryStore, TokenMemory
from protocol.constants import TOKEN_MGMT_PORT, MgmtStatus
from protocol.manufacturing import make_drives

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
T10K = [sys.executable, "-m", "lab.cli"]
NET = free_net()  # beside any lab, the README's daemons included
TOKEN_IP = NET.token_ip(0)
PROXY_IP = NET.token_ip(1)
DRIVES = ["d0", "d1"]


def dump(store: KmsStore, *, counters: bool = True) -> dict[str, list[tuple[object, ...]]]:
    """Every table but the audit trail (and the audit trail's head in meta)."""
    conn = sqlite3.connect(store.directory / "kms.sqlite3")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
        out = {}
        for t in tables:
            if t == "audit":
                continue
            rows = conn.execute(f"SELECT * FROM {t}").fetchall()
            if t == "meta":
                rows = [r for r in rows if r[0] != "audit_head"]
            if t == "tokens" and not counters:  # the replay high-water mark rises with every accepted status read
                rows = [r[:4] + r[5:] for r in rows]
            out[t] = sorted(rows, key=repr)
        return out
    finally:
        conn.close()


def but_pending(d: dict[str, list[tuple[object, ...]]]) -> dict[str, list[tuple[object, ...]]]:
    return {k: v for k, v in d.items() if k != "pending_writes"}


def actions(store: KmsStore) -> list[str]:
    return [r.action for r in store.audit_records()]


def backups(store: KmsStore) -> int:
    return len(list((store.directory / "backups").glob("*.t10kbak"))) if (store.directory / "backups").exists() else 0


class TokenProcess:
    def __init__(self, state: Path, secret_file: Path) -> None:
        self.state, self.secret_file = state, secret_file
        self.proc: subprocess.Popen[str] | None = None

    def start(self, *, in_service: bool = True) -> None:
        """``in_service``: a token whose replay counter was set before (by a RESYNC), so these
        tests see one exchange per request; a blank token's first contact is tested apart."""
        if in_service and not self.state.exists():
            secret = bytes.fromhex(self.secret_file.read_text().strip())
            MemoryStore(self.state, secret).save(TokenMemory(token_id=os.urandom(8)))
        self.proc = subprocess.Popen([*T10K, "token", "run", "--ip", TOKEN_IP, "--state", str(self.state),
                                      "--secret-file", str(self.secret_file), "--drive-lan-port", str(NET.lan_port)], cwd=ROOT, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        assert "serving" in line, f"the token daemon did not start: {line} {self.proc.stderr.read()}"  # type: ignore[union-attr]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class Kms:
    """A KMS store with two drives and one token, and that token's daemon (not started)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.store = KmsStore.create(tmp / "kms", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x07")
        set_backupkey(self.store, os.urandom(32))
        for name, made in zip(DRIVES, make_drives(2), strict=True):
            self.store.add_drive(name, made.csn, made.pckey, made.model)
        self.secret_file = tmp / "tok.secret"
        self.secret_file.write_text(self.store.add_token("tok", TOKEN_IP, TOKEN_MGMT_PORT).hex() + "\n")
        self.token = TokenProcess(tmp / "token-state", self.secret_file)

    def via_proxy(self, name: str = "tok-proxied") -> str:
        """The same token, registered a second time behind the proxy (same secret)."""
        secret = self.store.add_token(name, PROXY_IP, TOKEN_MGMT_PORT)
        conn = self.store._conn
        with self.store.transaction():  # give it the real token's secret: the proxy only forwards bytes
            conn.execute("UPDATE tokens SET secret_sealed=? WHERE name=?",
                         (self.store._seal(self.store.token_secret("tok"), b"token_secret:" + name.encode()), name))
        del secret
        return name

    async def status(self) -> object:
        return await station.token_status(self.store, "tok", timeout_s=5)


@pytest.fixture
def kms(tmp_path: Path) -> Iterator[Kms]:
    k = Kms(tmp_path)
    yield k
    k.token.stop()
    k.store.close()


class Proxy:
    """Between the KMS and the token: per connection, one behaviour from ``plan``, then plain forwarding.

    "apply-then-drop": forward the request, read the token's answer, close without passing it on.
    "hold": read the request, keep it (``held``), never forward it, never answer."""

    def __init__(self, plan: list[str]) -> None:
        self.plan = plan
        self.held: list[bytes] = []
        self.server: asyncio.base_events.Server | None = None

    async def __aenter__(self) -> Proxy:
        self.server = await asyncio.start_server(self._serve, PROXY_IP, TOKEN_MGMT_PORT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.plan.pop(0) if self.plan else "forward"
        try:
            request_bytes = await _read_frame(reader)
            if mode == "hold":
                self.held.append(request_bytes)
                await reader.read()  # until the KMS gives up and closes
                return
            r, w = await asyncio.open_connection(TOKEN_IP, TOKEN_MGMT_PORT)
            w.write(request_bytes)
            await w.drain()
            answer = await _read_frame(r)
            w.close()
            if mode == "forward":
                writer.write(answer)
                await writer.drain()
        finally:
            writer.close()


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    from protocol import decode_header
    from protocol.constants import HEADER_SIZE

    header = await reader.readexactly(HEADER_SIZE)
    return header + await reader.readexactly(decode_header(header).remaining)


async def test_an_unreachable_token_changes_nothing(kms: Kms) -> None:
    before, audit_before = dump(kms.store), actions(kms.store)
    with pytest.raises(TokenUnreachable, match=TOKEN_IP):
        await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True, timeout_s=2)
    assert dump(kms.store) == before
    assert actions(kms.store) == audit_before + ["write_ekt_failed"]  # no create_device_keys
    assert intents.pending(kms.store) == []


async def test_a_token_with_another_secret_changes_nothing(kms: Kms) -> None:
    kms.token.start()
    kms.store.add_token("impostor", TOKEN_IP, TOKEN_MGMT_PORT)  # the same daemon, another secret
    before, audit_before, saved = dump(kms.store), actions(kms.store), backups(kms.store)
    with pytest.raises(WrongSecret):
        await station.write_ekt(kms.store, "impostor", DRIVES, use_pckey=True)
    assert dump(kms.store) == before
    assert actions(kms.store) == audit_before + ["write_ekt_failed"]
    assert backups(kms.store) == saved
    assert (await kms.status()).csn_count == 0  # type: ignore[attr-defined]


async def test_a_refused_write_changes_nothing(kms: Kms) -> None:
    kms.token.start()
    # Someone holding the secret used a counter far ahead: our next write is refused as a replay.
    await request(TOKEN_IP, ReadStatus(), secret=kms.store.token_secret("tok"), counter=2**62)
    before, audit_before = dump(kms.store), actions(kms.store)
    with pytest.raises(TokenRefused, match="REPLAYED"):
        await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True)
    assert dump(kms.store) == before
    assert actions(kms.store) == audit_before + ["write_ekt_failed"]


async def test_a_blank_tokens_first_write_resynchronises_its_counter_once(kms: Kms) -> None:
    kms.token.start(in_service=False)  # blank: no replay counter yet
    audit_before = actions(kms.store)
    result = await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True)
    assert result.status is MgmtStatus.OK and all(kms.store.drive(d).enabled for d in DRIVES)
    assert actions(kms.store) == audit_before + ["resync_token_counter", "create_device_keys", "write_ekt", "backup"]
    records = [r.to_json() for r in kms.store.audit_records()]
    floor, written = records[-4]["detail"]["counter"], records[-2]["detail"]["counter"]  # type: ignore[index]
    assert written > floor  # type: ignore[operator]
    assert (await kms.status()).last_write_counter == written  # type: ignore[attr-defined]
    assert actions(kms.store)[-1] == "backup" and intents.pending(kms.store) == []  # no second resync


async def test_a_confirmed_write_is_recorded_with_its_keys_and_a_backup(kms: Kms) -> None:
    kms.token.start()
    audit_before, saved = actions(kms.store), backups(kms.store)
    result = await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True)
    assert result.status is MgmtStatus.OK
    assert all(kms.store.drive(d).enabled for d in DRIVES)
    assert actions(kms.store) == audit_before + ["create_device_keys", "write_ekt", "backup"]
    assert backups(kms.store) == saved + 1
    assert (await kms.status()).last_write_counter == kms.store.audit_records()[-2].to_json()["detail"]["counter"]  # type: ignore[attr-defined,index]


async def test_a_write_applied_whose_answer_is_lost_is_recorded(kms: Kms) -> None:
    kms.token.start()
    name = kms.via_proxy()
    audit_before, saved = actions(kms.store), backups(kms.store)
    async with Proxy(["apply-then-drop"]):
        result = await station.write_ekt(kms.store, name, DRIVES, use_pckey=True, timeout_s=3)
    assert result.status is MgmtStatus.OK and "status shows it took this write" in result.message
    assert all(kms.store.drive(d).enabled for d in DRIVES)  # the keys the token holds are the KMS's now
    assert actions(kms.store) == audit_before + ["create_device_keys", "write_ekt", "backup"]
    assert "status" in kms.store.audit_records()[-2].to_json()["detail"]["confirmed"]  # type: ignore[index]
    assert backups(kms.store) == saved + 1
    status = await kms.status()
    assert status.csn_count == 2  # type: ignore[attr-defined]
    assert intents.pending(kms.store) == []


async def test_a_write_that_timed_out_unapplied_changes_nothing_and_stays_dead(kms: Kms) -> None:
    kms.token.start()
    name = kms.via_proxy()
    before, audit_before = dump(kms.store, counters=False), actions(kms.store)
    async with Proxy(["hold"]) as proxy:
        with pytest.raises(TokenUnreachable, match="did not take the write"):
            await station.write_ekt(kms.store, name, DRIVES, use_pckey=True, timeout_s=1)
    assert dump(kms.store, counters=False) == before
    assert actions(kms.store) == audit_before + ["write_ekt_failed"]
    assert "never reached it" in kms.store.audit_records()[-1].to_json()["detail"]["why"]  # type: ignore[index]
    # The held write, delivered late, is refused: the status read fenced it.
    r, w = await asyncio.open_connection(TOKEN_IP, TOKEN_MGMT_PORT)
    w.write(proxy.held[0])
    await w.drain()
    answer = open_frame(await _read_frame(r), kms.store.token_secret("tok"))
    w.close()
    assert isinstance(answer.message, MgmtResult) and answer.message.status is MgmtStatus.REPLAYED
    assert (await kms.status()).csn_count == 0  # type: ignore[attr-defined]


async def test_a_token_killed_mid_write_is_settled_when_it_returns(kms: Kms) -> None:
    kms.token.start()
    await kms.status()  # the daemon is up and answering
    before = dump(kms.store, counters=False)
    assert kms.token.proc is not None
    kms.token.proc.send_signal(signal.SIGSTOP)  # it accepts the connection (kernel) but never reads it
    task = asyncio.ensure_future(station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True, timeout_s=2))
    await asyncio.sleep(0.5)
    kms.token.stop(signal.SIGKILL)  # killed while the write sits unread
    with pytest.raises(WriteUnsettled, match="t10k kms reconcile"):
        await task
    (pending,) = intents.pending(kms.store)
    assert pending.kind == "EKT" and pending.token == "tok"
    assert but_pending(dump(kms.store, counters=False)) == but_pending(before)
    with pytest.raises(WriteUnsettled, match="unsettled"):  # nothing new is written while one is unsettled
        await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True, timeout_s=1)
    kms.token.start()
    ((write, took),) = await station.reconcile(kms.store)
    assert took is False and write.counter == pending.counter
    assert dump(kms.store, counters=False) == before
    assert actions(kms.store)[-1] == "write_ekt_failed"
    await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True)  # and the next write goes through
    assert all(kms.store.drive(d).enabled for d in DRIVES)


CRASH_AFTER_PUSH = """
import asyncio, os, sys
from pathlib import Path
from kms_client import intents, station
from kms_client.store import KmsStore

def crash(*args, **kwargs):
    os._exit(9)  # the KMS dies after the token answered, before it committed anything

intents.commit = crash
store = KmsStore.open(Path(sys.argv[1]))
asyncio.run(station.write_ekt(store, "tok", ["d0", "d1"], use_pckey=True))
"""


@pytest.mark.parametrize("applied", [True, False], ids=["token-has-it", "token-lost-it"])
def test_a_kms_crash_between_push_and_commit_is_settled_at_the_next_open(kms: Kms, applied: bool) -> None:
    kms.token.start()
    before = dump(kms.store, counters=False)
    audit_before = actions(kms.store)
    crashed = subprocess.run([sys.executable, "-c", CRASH_AFTER_PUSH, str(kms.store.directory)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 9, crashed.stderr
    reopened = KmsStore.open(kms.store.directory)
    (pending,) = intents.pending(reopened)
    assert but_pending(dump(reopened, counters=False)) == but_pending(before)
    reopened.close()
    if not applied:  # the token lost its memory meanwhile (wiped): it does not hold that write
        kms.token.stop()
        for f in kms.token.state.iterdir():
            f.unlink()
        kms.token.start()
    listed = subprocess.run([*T10K, "kms", "list", "--store", str(kms.store.directory)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert f"counter {pending.counter}" in listed.stderr
    reopened = KmsStore.open(kms.store.directory)
    assert intents.pending(reopened) == []
    if applied:
        assert "the KMS recorded it" in listed.stderr
        assert all(reopened.drive(d).enabled for d in DRIVES)
        assert actions(reopened) == audit_before + ["create_device_keys", "write_ekt", "backup"]
    else:
        assert "the KMS dropped it" in listed.stderr
        assert dump(reopened, counters=False) == before
        # The token lost its counter with its memory: reading its status resynchronised it first.
        assert actions(reopened) == audit_before + ["resync_token_counter", "write_ekt_failed"]
    reopened.close()


def test_an_unsettled_write_names_the_command_that_settles_it(kms: Kms) -> None:
    kms.token.start()
    subprocess.run([sys.executable, "-c", CRASH_AFTER_PUSH, str(kms.store.directory)], cwd=ROOT,
                   capture_output=True, text=True, timeout=60)
    kms.token.stop()
    listed = subprocess.run([*T10K, "kms", "list", "--store", str(kms.store.directory)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0
    assert "UNSETTLED" in listed.stderr and "t10k kms reconcile" in listed.stderr
    assert "PENDING EKT write" in listed.stdout
    settle = subprocess.run([*T10K, "kms", "reconcile", "--store", str(kms.store.directory), "--timeout", "1"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert settle.returncode == 1 and "UNSETTLED" in settle.stdout
    kms.token.start()
    settle = subprocess.run([*T10K, "kms", "reconcile", "--store", str(kms.store.directory), "--json"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert settle.returncode == 0 and '"applied"' in settle.stdout


async def test_a_write_another_kms_process_is_pushing_is_left_to_it(kms: Kms) -> None:
    from kms_client.builders import prepare_ekt

    kms.token.start()
    pusher = subprocess.Popen(["sleep", "60"])  # stands for a live KMS process mid-push
    try:
        prepared = prepare_ekt(kms.store, DRIVES, use_pckey=True)
        write = intents.record(kms.store, "tok", "EKT", kms.store.peek_token_counter("tok"), prepared.changes,
                               prepared.detail)
        with kms.store.transaction() as conn:  # as if that process had recorded it
            conn.execute("UPDATE pending_writes SET intent_sealed=? WHERE counter=?", (kms.store._seal(
                json.dumps({"changes": prepared.changes.to_json(), "detail": prepared.detail, "pid": pusher.pid})
                .encode(), b"pending_write:" + write.counter.to_bytes(8, "big")), write.counter))
        ((seen, took),) = await station.reconcile(kms.store)
        assert seen.pid == pusher.pid and seen.in_flight and took is None
        with pytest.raises(WriteUnsettled, match=f"still being pushed by KMS process {pusher.pid}"):
            await station.write_ekt(kms.store, "tok", DRIVES, use_pckey=True)
    finally:
        pusher.kill()
        pusher.wait()
    ((seen, took),) = await station.reconcile(kms.store)  # that process is gone: settled from the token
    assert took is False and intents.pending(kms.store) == []
