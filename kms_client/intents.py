"""Token writes in flight: the KMS changes its store only on the token's confirmed answer.

Before a WRITE_EKT or WRITE_OKT leaves, the KMS records an *intent*: the token, the
replay counter the write carries, and what the store gains once the token has it (new
device keys, sealed, and what to audit), itself sealed under the database key. Then:

- the token answers OK: the intent is committed (store changes and audit record in one
  transaction), and a backup follows;
- the write never left, was refused, or went to a peer without this token's secret: the
  intent is dropped, and the store is as it was (an audit record says what failed);
- the token answers MGMT_CHALLENGE (it lost its replay counter, so it applied nothing):
  the intent is withdrawn without a trace, the token resynchronised, and the write sent
  again as a new intent above the new floor;
- the answer is lost (timeout, connection dropped, the KMS itself crashed): the intent
  stays until the token's status, read over its authenticated channel, settles it: its
  ``last_write_counter`` equals the intent's counter exactly when THIS write was applied.
  The status read carries a higher counter, so a write still in flight arrives too late
  and is refused as a replay: the answer cannot change afterwards.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from protocol.timestamps import format_timestamp, now_us

from .store import DeviceKeyChanges, KmsStore


#: After this long a write is settled even if its process still runs (pushes time out in 30 s).
IN_FLIGHT_LIMIT_US = 120_000_000


@dataclass(frozen=True)
class PendingWrite:
    counter: int
    token: str
    kind: str  # "EKT" or "OKT"
    started: int
    changes: DeviceKeyChanges
    detail: dict[str, Any]  # what the audit record of the write says
    pid: int = 0  # the KMS process pushing it

    @property
    def in_flight(self) -> bool:
        """Another KMS process on this host is still pushing it (its answer may yet come)."""
        if self.pid in (0, os.getpid()) or now_us() - self.started > IN_FLIGHT_LIMIT_US:
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False  # that process is gone: a crash
        except PermissionError:
            pass
        return True

    @property
    def action(self) -> str:
        return f"write_{self.kind.lower()}"

    def describe(self) -> str:
        return f"the {self.kind} written to token {self.token} at {format_timestamp(self.started)} (counter {self.counter})"


def _ad(counter: int) -> bytes:
    return b"pending_write:" + counter.to_bytes(8, "big")


def record(store: KmsStore, token: str, kind: str, counter: int, changes: DeviceKeyChanges,
           detail: dict[str, Any]) -> PendingWrite:
    """Before the push: the intent, durable, with nothing else changed."""
    pending = PendingWrite(counter, token, kind, now_us(), changes, detail, os.getpid())
    sealed = store._seal(json.dumps({"changes": changes.to_json(), "detail": detail, "pid": pending.pid}).encode(),
                         _ad(counter))
    with store.transaction() as conn:
        conn.execute("INSERT INTO pending_writes VALUES (?,?,?,?,?,?,?)", (
            counter, token, kind, pending.started, changes.next_ordinal, changes.timestamp, sealed))
    return pending


def pending(store: KmsStore) -> list[PendingWrite]:
    rows = store._conn.execute(
        "SELECT counter, token, kind, started, intent_sealed FROM pending_writes ORDER BY counter").fetchall()
    out = []
    for counter, token, kind, started, sealed in rows:
        data = json.loads(store._unseal(sealed, _ad(counter), f"pending write {counter}"))
        out.append(PendingWrite(counter, token, kind, started, DeviceKeyChanges.from_json(data["changes"]),
                                data["detail"], int(data.get("pid", 0))))
    return out


def commit(store: KmsStore, write: PendingWrite, how: str) -> None:
    """The token has the write: its store changes and its audit record, together."""
    with store.transaction() as conn:
        if conn.execute("DELETE FROM pending_writes WHERE counter=?", (write.counter,)).rowcount != 1:
            return  # settled already (by another process)
        store.apply_device_keys(write.changes)
        store.raise_token_counter(write.token, write.counter)
        store.audit(write.action, write.detail | {"counter": write.counter, "confirmed": how})


def drop(store: KmsStore, write: PendingWrite, why: str) -> None:
    """The token does not have the write: forget it; only the audit trail remembers the attempt."""
    with store.transaction() as conn:
        if conn.execute("DELETE FROM pending_writes WHERE counter=?", (write.counter,)).rowcount != 1:
            return
        store.audit(write.action + "_failed", write.detail | {"counter": write.counter, "why": why})


def withdraw(store: KmsStore, write: PendingWrite) -> None:
    """The token authentically applied nothing and the write goes again under a new counter:
    this intent never happened (the resync that follows is audited)."""
    with store.transaction() as conn:
        conn.execute("DELETE FROM pending_writes WHERE counter=?", (write.counter,))
