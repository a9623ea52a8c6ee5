"""The audit trail: every action, by operator, append-only and tamper-evident.

Each record carries an HMAC-SHA256 over the previous record's MAC and its own fields,
under an audit key kept sealed in the store, and the head of the chain (count and last
MAC) is itself MAC'd in the meta table. Editing, deleting or truncating records, without
the database key, shows in ``verify``. SQL triggers refuse UPDATE and DELETE outright.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
from dataclasses import dataclass

from protocol.timestamps import format_timestamp, now_us

GENESIS = bytes(32)


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: int
    operator: str
    action: str
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "time": format_timestamp(self.at), "operator": self.operator,
                "action": self.action, "detail": json.loads(self.detail) if self.detail else {}}


@dataclass(frozen=True)
class AuditVerdict:
    records: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def _mac(key: bytes, prev: bytes, r: AuditRecord) -> bytes:
    fields = json.dumps([r.seq, r.at, r.operator, r.action, r.detail], separators=(",", ":")).encode()
    return hmac.new(key, b"t10k-audit" + prev + fields, hashlib.sha256).digest()


def _head_seal(key: bytes, count: int, last: bytes) -> bytes:
    return hmac.new(key, b"t10k-audit-head" + count.to_bytes(8, "big") + last, hashlib.sha256).digest()


def append(conn: sqlite3.Connection, key: bytes, operator: str, action: str, detail: dict[str, object]) -> None:
    """Add one record; call inside the transaction of the action it records."""
    row = conn.execute("SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (row[0] + 1, bytes(row[1])) if row else (1, GENESIS)
    record = AuditRecord(seq, now_us(), operator, action, json.dumps(detail, sort_keys=True, separators=(",", ":")))
    mac = _mac(key, prev, record)
    conn.execute("INSERT INTO audit VALUES (?,?,?,?,?,?)",
                 (record.seq, record.at, record.operator, record.action, record.detail, mac))
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('audit_head', ?)", (_head_seal(key, seq, mac),))


def records(conn: sqlite3.Connection) -> list[AuditRecord]:
    return [AuditRecord(*r) for r in conn.execute("SELECT seq, at, operator, action, detail FROM audit ORDER BY seq")]


def verify(conn: sqlite3.Connection, key: bytes) -> AuditVerdict:
    problems: list[str] = []
    prev, expected_seq = GENESIS, 1
    rows = conn.execute("SELECT seq, at, operator, action, detail, mac FROM audit ORDER BY seq").fetchall()
    for row in rows:
        record = AuditRecord(*row[:5])
        if record.seq != expected_seq:
            problems.append(f"record {expected_seq} is missing (next is {record.seq})")
        if not hmac.compare_digest(_mac(key, prev, record), bytes(row[5])):
            problems.append(f"record {record.seq} ({record.action}) was altered, or one before it was removed")
        prev, expected_seq = bytes(row[5]), record.seq + 1
    head = conn.execute("SELECT value FROM meta WHERE name='audit_head'").fetchone()
    count = len(rows)
    if head is None and count:
        problems.append("the head of the trail is missing")
    elif head is not None and not hmac.compare_digest(bytes(head[0]), _head_seal(key, rows[-1][0] if rows else 0, prev)):
        problems.append("the trail does not end where it did: records were removed from its end")
    return AuditVerdict(count, tuple(problems))
