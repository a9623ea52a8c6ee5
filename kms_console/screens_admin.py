"""Screens of administration: Operators, Audit trail, Backups, Key export/import, Plan."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from kms_client import operators
from kms_client.backup import list_backups, take_backup
from kms_client.errors import KmsError
from kms_client.exchange import WARNING, export_keys, import_keys
from kms_client.planner import ROTATION_STEPS, parse_plan
from protocol.ids import parse_key_id

from . import plan_chart
from .web import Ctx, Screen

AUDIT_SHOWN = 300


async def operators_view(c: Ctx) -> dict[str, Any]:
    names = [r[0] for r in c.store._conn.execute("SELECT name FROM operators ORDER BY name")]
    return {"operators": [operators.operator(c.store, n) for n in names],
            "roles": [r.value for r in operators.MANAGES[c.who.role]]}


async def create_operator(c: Ctx) -> str:
    name = c.require("name", "the login's name")
    role = c.require("role", "its role")
    try:
        chosen = operators.Role(role)
    except ValueError:
        raise KmsError(f"no role {role!r}: Administrator, Security Officer or User") from None
    operators.create_operator(c.store, c.who, name, chosen, c.get("password"))
    return f"operator {name} ({role}) created"


async def set_operator_active(c: Ctx) -> str:
    name, active = c.require("name", "the login"), c.get("state") == "active"
    operators.set_active(c.store, c.who, name, active)
    return f"operator {name} is {'active' if active else 'inactive'}"


OPERATORS = Screen("operators.html", "list", operators_view, "Operators")


async def audit_view(c: Ctx) -> dict[str, Any]:
    records = [r.to_json() for r in c.store.audit_records()]
    return {"records": list(reversed(records))[:AUDIT_SHOWN], "total": len(records), "verdict": None}


async def audit_verify_view(c: Ctx) -> dict[str, Any]:
    data = await audit_view(c)
    data["verdict"] = c.store.verify_audit()
    return data


AUDIT = Screen("audit.html", "audit", audit_view, "Audit trail")
AUDIT_VERIFY = Screen("audit.html", "audit", audit_verify_view, "Audit trail")


async def backups_view(c: Ctx) -> dict[str, Any]:
    return {"backups": [b.to_json() for b in reversed(list_backups(c.store.directory))]}


async def take_backup_action(c: Ctx) -> str:
    info = take_backup(c.store, "operator request (console)")
    return f"backup {info.dump_id} written, {info.size} octets"


BACKUPS = Screen("backups.html", "backup", backups_view, "Backups")


async def exchange_view(c: Ctx) -> dict[str, Any]:
    return {"keys": [bytes(r[0]).hex() for r in c.store._conn.execute("SELECT key_id FROM keys ORDER BY key_id")],
            "warning": WARNING}


def _server_path(c: Ctx, name: str, what: str) -> Path:
    path = Path(c.require(name, what))
    if not path.is_absolute():
        raise KmsError(f"{what}: give an absolute path on the KMS host (the console never sends key values "
                       f"to the browser)")
    return path


async def export_action(c: Ctx) -> str:
    try:
        keys = [parse_key_id(k) for k in c.getlist("key")]
    except ValueError as exc:
        raise KmsError(str(exc)) from None
    out = _server_path(c, "out", "the export file")
    count = export_keys(c.store, keys, out, None, force=c.get("force") == "on")
    return f"{count} key(s) exported to {out} on the KMS host: {WARNING}"


async def import_action(c: Ctx) -> str:
    ids = import_keys(c.store, _server_path(c, "file", "the export to import"))
    return f"{len(ids)} key(s) imported: " + ", ".join(k.hex() for k in ids)


EXCHANGE = Screen("exchange.html", "list", exchange_view, "Media Key Export/Import")


async def plan_view(c: Ctx) -> dict[str, Any]:
    """The planner of Chapter 1 on a plan pasted as TOML (e.g. lab/topologies/company-xyz-plan.toml)."""
    text = c.get("plan") or c.request.query_params.get("plan", "")
    result: dict[str, Any] = {"plan_text": text, "chart": "", "rows": [], "rotations": c.get("rotations"),
                              "steps": ROTATION_STEPS}
    if not text.strip():
        return result
    plan = parse_plan(text, "the plan")
    rotations = c.get("rotations")
    if rotations:
        if not rotations.isdigit() or not 1 <= int(rotations) <= 365:
            raise KmsError("rotations a year must be 1..365")
        plan = dataclasses.replace(plan, rotations_per_year=int(rotations))
    years = plan_chart.default_years(plan)
    data = plan_chart.series(plan, years)
    result["chart"] = plan_chart.render_svg(data, years)
    result["years"] = list(range(1, years + 1))
    result["rows"] = [{"site": s.site, "keys": [p.keys for p in s.points], "over": [p.overbooked for p in s.points],
                       "rule_of_thumb": plan.rule_of_thumb(s.site), "overbooked_from": s.overbooked_from}
                      for s in data]
    result["plan"] = plan
    return result


async def draw_plan(c: Ctx) -> str:
    return "plan drawn"


PLAN = Screen("plan.html", "plan", plan_view, "Plan")
