"""What ``t10k kms list`` and ``t10k kms show`` print: every entity, as data and as text.

One function per kind builds the JSON-ready record; ``list`` is all of them, ``show`` one.
"""

from __future__ import annotations

from typing import Any, Callable

from protocol.ids import parse_key_id
from protocol.timestamps import format_timestamp

from . import intents
from .errors import NotFound
from .store import KmsStore

Record = dict[str, Any]


def _time(us: int) -> str | None:
    return format_timestamp(us) if us else None


def _drives(store: KmsStore, name: str | None = None) -> list[Record]:
    rows = store._conn.execute(
        "SELECT name, ip, description FROM drives" + (" WHERE name=?" if name else "") + " ORDER BY name",
        (name,) if name else ()).fetchall()
    out = []
    for n, ip, description in rows:
        d = store.drive(n)
        out.append({"name": d.name, "csn": d.csn.hex(), "model": d.model, "enabled": d.enabled,
                    "device_key_id": d.device_key_id.hex() if d.device_key_id else None,
                    "device_key_time": _time(d.device_key_timestamp), "pool": d.pool, "ip": ip,
                    "description": description})
    return out


def _tokens(store: KmsStore, name: str | None = None) -> list[Record]:
    rows = store._conn.execute(
        "SELECT name, ip, port, description FROM tokens" + (" WHERE name=?" if name else "") + " ORDER BY name",
        (name,) if name else ()).fetchall()
    pending = intents.pending(store)
    return [{"name": n, "ip": ip, "port": port, "description": description,
             "pending_writes": [{"kind": w.kind, "counter": w.counter, "started": _time(w.started)}
                                for w in pending if w.token == n]}
            for n, ip, port, description in rows]


def _keys(store: KmsStore, key_id: bytes | None = None) -> list[Record]:
    rows = store._conn.execute(
        "SELECT key_id, description, created_at FROM keys" + (" WHERE key_id=?" if key_id else "")
        + " ORDER BY key_id", (key_id,) if key_id else ()).fetchall()
    inactive = store.inactive_keys()
    out = []
    for kid, description, created in rows:
        kid = bytes(kid)
        sets = [r[0] for r in store._conn.execute(
            "SELECT key_set FROM key_set_members WHERE key_id=? ORDER BY key_set", (kid,))]
        out.append({"key_id": kid.hex(), "state": "inactive" if kid in inactive else "active",
                    "description": description, "created": _time(created), "key_sets": sets})
    return out


def _key_sets(store: KmsStore, name: str | None = None) -> list[Record]:
    rows = store._conn.execute(
        "SELECT name, description FROM key_sets" + (" WHERE name=?" if name else "") + " ORDER BY name",
        (name,) if name else ()).fetchall()
    out = []
    for n, description in rows:
        pools = [r[0] for r in store._conn.execute(
            "SELECT pool FROM mapping_key_sets WHERE key_set=? ORDER BY pool", (n,))]
        out.append({"name": n, "description": description, "keys": [k.hex() for k in store.key_set_members(n)],
                    "mapped_to": pools})
    return out


def _pools(store: KmsStore, name: str | None = None) -> list[Record]:
    rows = store._conn.execute(
        "SELECT name, description FROM pools" + (" WHERE name=?" if name else "") + " ORDER BY name",
        (name,) if name else ()).fetchall()
    out = []
    for n, description in rows:
        try:
            m = store.mapping(n)
            mapping: Record | None = {
                "key_sets": list(m.key_sets), "write_key_id": m.write_key_id.hex(),
                "key_ids": [k.hex() for k in m.key_ids], "timestamp": m.timestamp, "time": _time(m.timestamp)}
        except NotFound:
            mapping = None
        out.append({"name": n, "description": description, "drives": [d.name for d in store.pool_drives(n)],
                    "mapping": mapping})
    return out


_BUILDERS: dict[str, tuple[str, Callable[..., list[Record]]]] = {
    "drive": ("drives", _drives), "token": ("tokens", _tokens), "key": ("keys", _keys),
    "key-set": ("key_sets", _key_sets), "pool": ("pools", _pools),
}
KINDS = tuple(_BUILDERS)


def everything(store: KmsStore) -> Record:
    return {"kms_id": store.kms_id.hex()} | {plural: build(store) for plural, build in _BUILDERS.values()}


def one(store: KmsStore, kind: str, name: str) -> Record:
    plural, build = _BUILDERS[kind]
    found = build(store, parse_key_id(name) if kind == "key" else name)
    if not found:
        raise NotFound(f"no {kind} {name!r}; 't10k kms list' shows every {kind}")
    return found[0]


# --- text ---------------------------------------------------------------------


def _line(kind: str, r: Record) -> str:
    desc = f"  \"{r['description']}\"" if r.get("description") else ""
    if kind == "drive":
        state = f"enabled (device key {r['device_key_id']}, {r['device_key_time']})" if r["enabled"] else "not enabled"
        return f"{r['name']:<12} {r['csn']} {r['model']:<10} {state}  pool {r['pool'] or '-'}  ip {r['ip'] or '-'}{desc}"
    if kind == "token":
        pending = "".join(f"  PENDING {w['kind']} write (counter {w['counter']}, {w['started']}): t10k kms reconcile"
                          for w in r["pending_writes"])
        return f"{r['name']:<12} {r['ip']}:{r['port']}{desc}{pending}"
    if kind == "key":
        return f"{r['key_id']}  {r['state']:<8}  in {', '.join(r['key_sets']) or 'no key set'}{desc}"
    if kind == "key-set":
        mapped = f"mapped to {', '.join(r['mapped_to'])}" if r["mapped_to"] else "unmapped"
        return f"{r['name']:<12} {len(r['keys'])} key(s), {mapped}{desc}\n" + "".join(
            f"    {k}\n" for k in r["keys"]).rstrip("\n")
    m = r["mapping"]
    head = f"{r['name']:<12} drives {', '.join(r['drives']) or '-'}{desc}"
    if m is None:
        return head + "\n    no mapping yet"
    return head + (f"\n    mapping of {m['time']}: key sets {', '.join(m['key_sets'])}, write key {m['write_key_id']}"
                   f"\n    key IDs {', '.join(m['key_ids'])}")


def render_everything(data: Record) -> str:
    lines = [f"KMS ID {data['kms_id']}"]
    for kind, (plural, _) in _BUILDERS.items():
        lines.append(f"{plural.replace('_', ' ')}:")
        rows = data[plural]
        lines += ["  " + _line(kind, r).replace("\n", "\n  ") for r in rows] or ["  (none)"]
    return "\n".join(lines)


def render_one(kind: str, data: Record) -> str:
    lines = [f"{kind} {data.get('name') or data.get('key_id')}"]
    for k, v in data.items():
        if isinstance(v, dict):
            lines.append(f"  {k}:")
            lines += [f"    {kk:<13} {', '.join(map(str, vv)) if isinstance(vv, list) else vv}" for kk, vv in v.items()]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            lines.append(f"  {k}:")
            lines += ["    " + ", ".join(f"{kk} {vv}" for kk, vv in item.items()) for item in v]
        else:
            shown = ", ".join(map(str, v)) or "-" if isinstance(v, list) else ("-" if v in (None, "") else v)
            lines.append(f"  {k:<15} {shown}")
    return "\n".join(lines)
