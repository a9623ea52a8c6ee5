"""Screens of the daily work: Tokens, Mappings, Keys and key sets, Drives, Drive pools.

Every screen reads through kms_client.views and every action is a call of the station's
library (store, station, entities, operators): the console holds no rule of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kms_client import operators, station, views
from kms_client.entities import import_drive, remove_key_from_set
from kms_client.errors import KmsError
from protocol.ids import parse_csn, parse_key_id
from protocol.timestamps import format_timestamp

from .web import Ctx, Screen


def _key_id(text: str) -> bytes:
    try:
        return parse_key_id(text)
    except ValueError as exc:
        raise KmsError(str(exc)) from None


# --- Tokens ---------------------------------------------------------------------


async def tokens_view(c: Ctx) -> dict[str, Any]:
    return {"tokens": views.everything(c.store)["tokens"]}


async def token_view(c: Ctx) -> dict[str, Any]:
    """The seed's "View Token": status, LEDs and the errors drives reported (drive, code, key ID)."""
    name = c.request.path_params["name"]
    data = views.one(c.store, "token", name)
    everything = views.everything(c.store)
    result: dict[str, Any] = {"token": data, "drives": everything["drives"], "pools": everything["pools"],
                              "status": None, "unreachable": ""}
    try:
        s = await station.token_status(c.store, name, timeout_s=5.0)
    except KmsError as exc:
        result["unreachable"] = str(exc)
        return result
    names = {d.csn: d.name for d in c.store.drives()}
    result["status"] = {
        "mode": s.mode.name, "led3": s.led3.name, "error_led": s.error_led.name, "pool": s.pool,
        "time": format_timestamp(s.timestamp) if s.timestamp else "-", "csns": s.csn_count,
        "packages_held": s.packages_held, "acknowledged": s.acknowledged, "last_write_counter": s.last_write_counter,
        "errors": [{"drive": names.get(e.csn, e.csn.hex()), "csn": e.csn.hex(), "code": f"{int(e.error_code):08X}",
                    "error": e.error_code.name, "key_id": e.key_id.hex(), "reported": format_timestamp(e.reported_at)}
                   for e in s.errors]}
    return result


async def write_device_keys(c: Ctx) -> str:
    token, drives = c.request.path_params["name"], c.getlist("drive")
    if not drives:
        raise KmsError("tick the drives to write device keys for")
    result = await station.write_ekt(c.store, token, drives, use_pckey=c.get("use_pckey") == "on")
    return f"Write Device Keys to {token} ({', '.join(drives)}): {result.message}"


async def write_media_keys(c: Ctx) -> str:
    token, pool = c.request.path_params["name"], c.require("pool", "the drive pool whose keys to write")
    result = await station.write_okt(c.store, token, pool)
    return f"Write Media Keys of {pool} to {token}: {result.message}"


TOKENS = Screen("tokens.html", "list", tokens_view, "Tokens")
TOKEN = Screen("token.html", "token-status", token_view, "View Token")


# --- Mappings -----------------------------------------------------------------------


async def mappings_view(c: Ctx) -> dict[str, Any]:
    data = views.everything(c.store)
    return {"pools": data["pools"], "key_sets": data["key_sets"], "keys": data["keys"]}


async def modify_mapping(c: Ctx) -> str:
    pool = c.request.path_params["pool"]
    m = c.store.set_mapping(pool, c.getlist("key_set"), _key_id(c.require("write_key", "the write key")))
    return (f"pool {pool}: mapping saved, {len(m.key_ids)} key(s), write key {m.write_key_id.hex()}, "
            f"timestamp {format_timestamp(m.timestamp)}; write the pool's token (Write Media Keys) to transfer it")


async def apply_mapping(c: Ctx) -> str:
    pool = c.request.path_params["pool"]
    m = c.store.apply_mapping(pool)
    return f"pool {pool}: mapping applied, new timestamp {format_timestamp(m.timestamp)}"


MAPPINGS = Screen("mappings.html", "list", mappings_view, "Mappings")


# --- Keys and key sets ----------------------------------------------------------------


async def keys_view(c: Ctx) -> dict[str, Any]:
    data = views.everything(c.store)
    requests = [{"key_id": bytes(r[0]).hex(), "action": r[1], "role": r[2], "operator": r[3]}
                for r in c.store._conn.execute("SELECT key_id, action, role, operator FROM key_state_requests "
                                               "ORDER BY key_id")]
    return {"keys": data["keys"], "key_sets": data["key_sets"], "requests": requests}


async def create_key(c: Ctx) -> str:
    key_set = c.get("key_set")
    if key_set:
        c.authorize("add-key")
    key_id = c.store.create_key(c.get("description"))
    if key_set:
        c.store.add_key_to_set(key_set, key_id)
    return f"key {key_id.hex()} created" + (f" in key set {key_set}" if key_set else "")


async def create_key_set(c: Ctx) -> str:
    name = c.require("name", "the key set's name")
    c.store.create_key_set(name)
    return f"key set {name} created"


async def add_key(c: Ctx) -> str:
    key_set, key_id = c.require("key_set", "the key set"), _key_id(c.require("key", "the key ID"))
    c.store.add_key_to_set(key_set, key_id)
    return f"key {key_id.hex()} added to {key_set}"


async def remove_key(c: Ctx) -> str:
    key_set, key_id = c.require("key_set", "the key set"), _key_id(c.require("key", "the key ID"))
    remove_key_from_set(c.store, key_set, key_id)
    return f"key {key_id.hex()} removed from {key_set}"


async def deactivate_key(c: Ctx) -> str:
    return operators.request_key_state(c.store, c.who, _key_id(c.require("key", "the key ID")), False)


async def reactivate_key(c: Ctx) -> str:
    return operators.request_key_state(c.store, c.who, _key_id(c.require("key", "the key ID")), True)


KEYS = Screen("keys.html", "list", keys_view, "Keys and key sets")


# --- Drives and drive pools --------------------------------------------------------------


async def drives_view(c: Ctx) -> dict[str, Any]:
    return {"drives": views.everything(c.store)["drives"]}


async def import_drive_action(c: Ctx) -> str:
    try:
        csn = parse_csn(c.require("csn", "the drive's CSN"))
    except ValueError as exc:
        raise KmsError(str(exc)) from None
    name = c.require("name", "the drive's permanent name")
    made = import_drive(c.store, Path(c.require("manufacturing", "the manufacturing file")), csn, name, c.get("ip"))
    return f"drive {name} (CSN {made.csn.hex()}, {made.model}) imported"


async def set_drive_ip(c: Ctx) -> str:
    drive, ip = c.require("drive", "the drive"), c.require("ip", "the drive's IP address")
    c.store.set_drive_ip(drive, ip)
    return f"drive {drive} is at {ip}"


async def pools_view(c: Ctx) -> dict[str, Any]:
    data = views.everything(c.store)
    return {"pools": data["pools"], "drives": data["drives"], "verified": None}


async def create_pool(c: Ctx) -> str:
    name = c.require("name", "the pool's name")
    c.store.create_pool(name)
    return f"pool {name} created"


async def add_drive(c: Ctx) -> str:
    pool, drives = c.require("pool", "the pool"), c.getlist("drive")
    if not drives:
        raise KmsError("tick the drives to add")
    for d in drives:
        c.store.add_drive_to_pool(pool, d)
    return f"{', '.join(drives)} added to {pool}"


DRIVES = Screen("drives.html", "list", drives_view, "Drives")
POOLS = Screen("pools.html", "list", pools_view, "Drive pools")


async def verify_pool_view(c: Ctx) -> dict[str, Any]:
    """The pool screen with the answer of every drive's VOP against the mapping's timestamp."""
    pool = c.request.path_params["pool"]
    data = await pools_view(c)
    rows = await station.verify_pool(c.store, pool)
    data["verified"] = {"pool": pool, "time": format_timestamp(c.store.mapping(pool).timestamp), "rows": rows,
                        "holding": sum(1 for r in rows if r["ok"])}
    return data


VERIFY_POOL = Screen("pools.html", "verify-pool", verify_pool_view, "Verify pool")
