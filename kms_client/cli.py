"""``t10k kms ...``: the thin KMS station from the command line.

Every command takes ``--store DIR`` (or $T10K_KMS_STORE), ``--json`` and ``--dbkey-file PATH``
(the database key's file; else $T10K_DBKEY, the file named at init, STORE/dbkey or a prompt:
kms_client/storefiles.resolve_dbkey, the one place every command finds the key).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from protocol.cli_options import Progress, add_ip, add_json, add_mqtt
from protocol.constants import TOKEN_MGMT_PORT
from protocol.ids import cli_type, parse_csn, parse_hex, parse_key_id
from protocol.timestamps import format_timestamp

from . import intents, operators, station, views
from .files import write_key_file
from .errors import StoreDamaged, StoreError
from .store import KmsStore, parse_db_key
from .storefiles import DBKEY_ENV, DbKeySource


def _store_dir(value: str | None) -> Path:
    return Path(value or os.environ.get("T10K_KMS_STORE", "kms-store"))


def _dbkey_source(args: argparse.Namespace) -> DbKeySource:
    """How this command was told the database key (the same for every command)."""
    return DbKeySource(file=args.dbkey_file)


def _open_store(args: argparse.Namespace, source: DbKeySource | None = None) -> KmsStore:
    return KmsStore.open(_store_dir(args.store), dbkey=source or _dbkey_source(args))


def _db_key(text: str) -> bytes:
    try:
        return parse_db_key(text)
    except StoreError as exc:
        raise ValueError(str(exc)) from None


def register(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:  # type: ignore[type-arg]
    """``t10k kms ...``; returns its subcommands, so another package (the console) can add its own."""
    kms = sub.add_parser("kms", help="the Key Management Station")
    ksub = kms.add_subparsers(dest="kms_command", required=True)

    def cmd(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        p = ksub.add_parser(name, help=help)
        p.add_argument("--store", help="KMS store directory (default $T10K_KMS_STORE or ./kms-store)")
        p.add_argument("--dbkey-file", type=Path, help=f"the file holding the database key (init: where to keep it); "
                       f"default: the file named at init, else ${DBKEY_ENV} (64 hex), else STORE/dbkey, else asked "
                       f"on a terminal")
        p.add_argument("--session", default=os.environ.get("T10K_SESSION"),
                       help="session token from 't10k kms login' (default $T10K_SESSION)")
        add_json(p)
        p.set_defaults(func=func)
        return p

    p = cmd("init", _init, "create a KMS store with its database key and KMS ID")
    p.add_argument("--kms-id", type=cli_type(lambda s: parse_hex(s, 4, "a KMS ID")), help="8 hex characters (default: random)")
    p.add_argument("--dbkey", type=cli_type(_db_key), help=f"64 hex characters (default: the key in --dbkey-file if "
                   f"it exists, else ${DBKEY_ENV}, else random); kept in --dbkey-file, else in STORE/dbkey unless it "
                   f"came from ${DBKEY_ENV}")
    p.add_argument("--no-roles", action="store_true",
                   help="no operator logins (a quick lab): every action is recorded as the OS user")
    p.add_argument("--force", action="store_true", help="overwrite a database key file left in the directory")

    p = cmd("login", _login, "log in as an operator (password on standard input); prints a session token")
    p.add_argument("--operator", required=True)
    cmd("logout", _logout, "end the session (a backup is taken)")
    cmd("passwd", _passwd, "change your password (new password on standard input)")
    p = cmd("create-operator", _create_operator, "create a login (password on standard input)")
    p.add_argument("name")
    p.add_argument("--role", required=True, choices=["Administrator", "Security Officer", "User"])
    p = cmd("set-operator-active", _set_operator_active, "mark a login active or inactive")
    p.add_argument("name")
    p.add_argument("state", choices=["active", "inactive"])
    for verb in ("deactivate", "reactivate"):
        p = cmd(f"{verb}-key", _key_state, f"{verb} a key: a User and an Administrator must both ask")
        p.add_argument("key", type=cli_type(parse_key_id))

    p = cmd("import-drive", _import_drive, "import one drive's CSN and PCkey from a manufacturing file")
    p.add_argument("--manufacturing", required=True, type=Path)
    p.add_argument("--csn", required=True, type=cli_type(parse_csn))
    p.add_argument("--name", required=True, help="the drive's permanent name")
    add_ip(p, "the drive", required=False, default="", purpose="for verify-pool")

    p = cmd("set-drive-ip", _set_drive_ip, "record a drive's static IP (for verify-pool)")
    p.add_argument("--drive", required=True)
    add_ip(p, "the drive")

    p = cmd("verify-pool", _verify_pool, "ask every drive of a pool for its OKT timestamp; list those that differ")
    p.add_argument("--pool", required=True)

    p = cmd("add-token", _add_token, "register a token at its static IP and write its provisioning secret")
    p.add_argument("--name", required=True)
    add_ip(p, "the token")
    p.add_argument("--port", type=int, default=TOKEN_MGMT_PORT)
    p.add_argument("--secret-out", required=True, type=Path, help="file to give the token daemon (--secret-file)")
    p.add_argument("--force", action="store_true", help="overwrite --secret-out if it exists")

    p = cmd("create-key", _create_key, "generate a media key (its value is never shown)")
    p.add_argument("--description", default="")
    p.add_argument("--key-set", help="also add it to this (unmapped) key set")

    p = cmd("create-key-set", _create_key_set, "create an empty key set")
    p.add_argument("name")

    p = cmd("add-key", _add_key, "add a key to an unmapped key set")
    p.add_argument("--key-set", required=True)
    p.add_argument("--key", required=True, type=cli_type(parse_key_id))

    p = cmd("create-pool", _create_pool, "create a drive pool")
    p.add_argument("name")

    p = cmd("add-drive", _add_drive, "add an encryption-enabled drive to a pool")
    p.add_argument("--pool", required=True)
    p.add_argument("--drive", required=True, action="append", help="repeat for several drives")

    p = cmd("remove-key", _remove_key, "remove a key from an unmapped key set")
    p.add_argument("--key-set", required=True)
    p.add_argument("--key", required=True, type=cli_type(parse_key_id))

    p = cmd("describe", _describe, "set an entity's description (only while it is unmapped)")
    p.add_argument("kind", choices=["drive", "key", "key-set", "pool", "token"])
    p.add_argument("name", help="the entity's name (a key: its ID)")
    p.add_argument("description")

    p = cmd("delete", _delete, "delete a drive created in error (nothing else can be deleted)")
    p.add_argument("kind", choices=["drive", "key", "key-set", "pool", "token"])
    p.add_argument("name")

    p = cmd("map", _map, "set a pool's mapping (key sets and write key); gives it a new timestamp")
    p.add_argument("--pool", required=True)
    p.add_argument("--key-set", required=True, action="append", help="repeat for several key sets")
    p.add_argument("--write-key", required=True, type=cli_type(parse_key_id))

    p = cmd("apply", _apply, "refresh a pool's mapping unchanged: a new timestamp (seed, Scenario 5)")
    p.add_argument("--pool", required=True)

    p = cmd("write-ekt", _write_ekt, "write new device keys for drives to a token (an EKT)")
    p.add_argument("--token", required=True)
    p.add_argument("--drive", required=True, action="append", help="repeat for several drives")
    p.add_argument("--use-pckey", action="store_true", help="wrap under the PCkey: first enrolment or after a reset")
    p.add_argument("--image", type=Path, help="air gap: write the token image to this file instead of the network")
    p.add_argument("--force", action="store_true", help="overwrite --image if it exists")

    p = cmd("write-okt", _write_okt, "write a pool's media keys to a token (an OKT)")
    p.add_argument("--token", required=True)
    p.add_argument("--pool", required=True)
    p.add_argument("--image", type=Path, help="air gap: write the token image to this file instead of the network")
    p.add_argument("--force", action="store_true", help="overwrite --image if it exists")

    p = cmd("token-status", _token_status, "read a token's status and errors over the network")
    p.add_argument("--token", required=True)
    p.add_argument("--image", type=Path, help="air gap: read a status image saved by 't10k token save-image'")

    cmd("list", _list, "list drives, tokens, keys, key sets, pools and each pool's mapping")
    p = cmd("show", _show, "show one drive, token, key, key set or pool whole (a pool: its drives and mapping)")
    p.add_argument("kind", choices=list(views.KINDS))
    p.add_argument("name", help="the entity's name (a key: its ID)")
    p = cmd("reconcile", _reconcile, "settle token writes whose answer was lost, from each token's status")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for each token")

    p = cmd("set-dbkey", _set_dbkey, "change the database key: every stored key is re-encrypted in one transaction")
    p.add_argument("--key-file", type=Path, help="file holding the 64 hex characters (default: read standard input)")
    p = cmd("set-backupkey", _set_backupkey, "set the key later backups are encrypted with")
    p.add_argument("--key-file", type=Path, help="file holding the 64 hex characters (default: read standard input)")
    cmd("view-backupkey", _view_backupkey, "print the current backup key (recorded in the audit trail)")
    p = cmd("set-kmsid", _set_kmsid, "set the KMS ID that new key IDs carry")
    p.add_argument("kms_id", type=cli_type(lambda s: parse_hex(s, 4, "a KMS ID")), help="8 hex characters")
    p = cmd("export-keys", _export_keys, "export keys (plaintext values!) to XML, and text, for another KMS")
    p.add_argument("--key", type=cli_type(parse_key_id), action="append", default=[], help="repeat; or --all")
    p.add_argument("--all", action="store_true")
    p.add_argument("--out", type=Path, required=True, help="the XML file (not overwritten without --force)")
    p.add_argument("--text", type=Path, help="also write the keys as text (the seed's export2text)")
    p.add_argument("--force", action="store_true", help="overwrite --out and --text if they exist")
    p = cmd("import-keys", _import_keys, "import the keys of another KMS's export")
    p.add_argument("file", type=Path)
    p = cmd("plan", _plan, "plan mappings per year from sites, DR flows, retention and rotation (seed, Chapter 1)")
    p.add_argument("file", type=Path, help="a plan (TOML), e.g. lab/topologies/company-xyz-plan.toml")
    p.add_argument("--year", type=int, default=1, help="show the mappings of this year (1 is Day 1)")
    p.add_argument("--rotations-per-year", type=int, help="override the plan's rotation frequency")
    p = cmd("standby", _standby, "the one cold standby: name it, or copy new backup sets to it")
    p.add_argument("action", choices=["set", "sync"])
    p.add_argument("--dir", type=Path, help="the standby's directory (for 'set')")
    p.add_argument("--interval", type=float, help="sync every this many seconds (the seed: 60) until stopped")
    p.add_argument("--count", type=int, help="with --interval: stop after this many rounds")
    p = cmd("failover", _failover, "make the standby (--store) the primary from its latest backup")
    p.add_argument("--key-file", type=Path, required=True, help="the backup key")
    p.add_argument("--primary", type=Path, help="the primary's store, if it still runs: final backup first")
    p = cmd("watch", _watch, "show token alerts and drive state live, from the MQTT broker (docs/EVENTS.md)")
    add_mqtt(p, "the broker to watch", required=True, site=False)
    p.add_argument("--count", type=int, help="stop after this many messages")
    p.add_argument("--timeout", type=float, help="stop after this many seconds")
    cmd("backup", _backup, "take an encrypted backup now (one is also taken on every token write)")
    p = cmd("restore", _restore, "list backups, or restore one (seed: run_restore_db)")
    p.add_argument("dump_id", nargs="?", help="'list', 'latest' or a dump ID")
    p.add_argument("--key-file", type=Path, help="file with the backup key used for that backup")
    p.add_argument("--key", help="the backup key itself, as the seed's -k (visible to other users: prefer --key-file)")
    p.add_argument("--from", dest="source", type=Path, help="restore from another KMS's store (its backups/)")
    p = cmd("audit", _audit, "the audit trail: list it, or verify it has not been edited")
    p.add_argument("action", choices=["list", "verify"])
    return ksub


def _open(args: argparse.Namespace, source: DbKeySource | None = None) -> KmsStore:
    """The store, with this command authorised for the session's operator when roles are on.
    A token write a crash left unsettled is settled first, from the token's status."""
    store = _open_store(args, source)
    if operators.roles_enabled(store):
        who = operators.session_operator(store, args.session)
        operators.authorize(who, args.kms_command)
    if args.kms_command != "reconcile" and any(not w.in_flight for w in intents.pending(store)):
        _report_settled(asyncio.run(station.reconcile(store, timeout_s=5.0)), quiet=False)
    return store


def _report_settled(settled: list[tuple[intents.PendingWrite, bool | None]], *, quiet: bool) -> list[str]:
    import sys

    lines = []
    for write, took in settled:
        lines.append(f"{write.describe()}: " + (
            "the token has it; the KMS recorded it" if took else
            "the token does not have it; the KMS dropped it" if took is False else
            f"in progress in KMS process {write.pid}" if write.in_flight else
            "UNSETTLED: the token's status cannot be read; start the token, then run 't10k kms reconcile'"))
    if not quiet:
        for line in lines:
            print(f"t10k: note: {line}", file=sys.stderr)
    return lines


def _me(store: KmsStore, args: argparse.Namespace) -> operators.Operator:
    return operators.session_operator(store, args.session)


def _out(args: argparse.Namespace, data: dict[str, Any], text: str) -> int:
    print(json.dumps(data, indent=2) if args.json else text)
    return 0


def _init_dbkey(args: argparse.Namespace) -> tuple[bytes, bool]:
    """(the new store's database key, whether to keep it in a file). A key file the operator made
    first is used as it is; a key from the environment is kept nowhere (unless --dbkey-file)."""
    source = _dbkey_source(args)
    if args.dbkey is None and args.dbkey_file is not None and args.dbkey_file.exists():
        text = _read_text(args.dbkey_file, "a database key")
        try:
            return parse_db_key(text), True
        except StoreError as exc:
            raise StoreError(f"the database key in {args.dbkey_file}: {exc}") from None
    if args.dbkey is not None:
        return args.dbkey, True
    env = source.env_key()
    if env is not None:
        return env, args.dbkey_file is not None
    return os.urandom(32), True


def _init(args: argparse.Namespace) -> int:
    directory = _store_dir(args.store)
    kms_id = args.kms_id or os.urandom(4)
    dbkey, keep = _init_dbkey(args)
    store = KmsStore.create(directory, dbkey=dbkey, kms_id=kms_id, force=args.force, dbkey_file=args.dbkey_file,
                            keep_dbkey=keep)
    if not args.no_roles:
        operators.enable_roles(store)
    where = store.dbkey_path
    store.close()
    from .console_cert import make_console_cert

    cert, _ = make_console_cert(directory)  # for 't10k kms serve' (HTTPS)
    logins = "" if args.no_roles else (f"; operator {operators.DEFAULT_ADMIN}, password {operators.DEFAULT_PASSWORD}"
                                       f" (common to every KMS: change it at first login)")
    kept = f"database key in {where}" if where is not None else \
        f"database key kept nowhere: give it as ${DBKEY_ENV} (or at the prompt) to every command"
    return _out(args, {"store": str(directory), "kms_id": kms_id.hex(), "roles": not args.no_roles,
                       "dbkey_file": None if where is None else str(where), "console_cert": str(cert)},
                f"KMS store created in {directory} (KMS ID {kms_id.hex()}); {kept}{logins}; "
                f"the console's HTTPS certificate in {cert}")


def _import_drive(args: argparse.Namespace) -> int:
    """One drive at a time, as the seed's limitation 4 says."""
    from .entities import import_drive

    made = import_drive(_open(args), args.manufacturing, args.csn, args.name, args.ip)
    return _out(args, {"drive": args.name, "csn": made.csn.hex(), "model": made.model},
                f"drive {args.name} (CSN {made.csn.hex()}, {made.model}) imported")


def _add_token(args: argparse.Namespace) -> int:
    from .files import refuse_existing

    store = _open(args)
    refuse_existing(args.secret_out, force=args.force, what="a token secret")
    secret = store.add_token(args.name, args.ip, args.port)
    write_key_file(args.secret_out, (secret.hex() + "\n").encode(), force=args.force, what="a token secret")
    return _out(args, {"token": args.name, "ip": args.ip, "secret_file": str(args.secret_out)},
                f"token {args.name} at {args.ip}: give {args.secret_out} to its daemon (--secret-file)")


def _create_key(args: argparse.Namespace) -> int:
    store = _open(args)
    key_id = store.create_key(args.description)
    if args.key_set:
        store.add_key_to_set(args.key_set, key_id)
    return _out(args, {"key_id": key_id.hex(), "key_set": args.key_set}, key_id.hex())


def _create_key_set(args: argparse.Namespace) -> int:
    _open(args).create_key_set(args.name)
    return _out(args, {"key_set": args.name}, f"key set {args.name} created")


def _add_key(args: argparse.Namespace) -> int:
    _open(args).add_key_to_set(args.key_set, args.key)
    return _out(args, {"key_set": args.key_set, "key_id": args.key.hex()}, f"key {args.key.hex()} added to {args.key_set}")


def _create_pool(args: argparse.Namespace) -> int:
    _open(args).create_pool(args.name)
    return _out(args, {"pool": args.name}, f"pool {args.name} created")


def _add_drive(args: argparse.Namespace) -> int:
    store = _open(args)
    for d in args.drive:
        store.add_drive_to_pool(args.pool, d)
    return _out(args, {"pool": args.pool, "drives": args.drive}, f"{', '.join(args.drive)} added to {args.pool}")


def _mapping_json(m: Any) -> dict[str, Any]:
    return {"pool": m.pool, "key_sets": list(m.key_sets), "write_key_id": m.write_key_id.hex(),
            "key_ids": [k.hex() for k in m.key_ids], "timestamp": m.timestamp, "time": format_timestamp(m.timestamp)}


def _map(args: argparse.Namespace) -> int:
    m = _open(args).set_mapping(args.pool, args.key_set, args.write_key)
    return _out(args, _mapping_json(m), f"pool {m.pool}: {len(m.key_ids)} key(s), write key {m.write_key_id.hex()}, "
                                        f"timestamp {format_timestamp(m.timestamp)}")


def _apply(args: argparse.Namespace) -> int:
    m = _open(args).apply_mapping(args.pool)
    return _out(args, _mapping_json(m), f"pool {m.pool}: mapping refreshed, timestamp {format_timestamp(m.timestamp)}")


def _write_ekt(args: argparse.Namespace) -> int:
    if args.image:
        from .builders import prepare_ekt
        from .files import refuse_existing

        refuse_existing(args.image, force=args.force, what="a token image")
        store = _open(args)
        station.write_image(store, args.token, prepare_ekt(store, args.drive, use_pckey=args.use_pckey), args.image,
                            force=args.force)
        return _out(args, {"image": str(args.image)}, f"EKT image for {args.token} written to {args.image}: "
                    f"'t10k token load-image' writes it to the token")
    result = asyncio.run(station.write_ekt(_open(args), args.token, args.drive, use_pckey=args.use_pckey))
    return _out(args, {"token": args.token, "status": result.status.name, "message": result.message}, result.message)


def _write_okt(args: argparse.Namespace) -> int:
    if args.image:
        from .builders import prepare_okt
        from .files import refuse_existing

        refuse_existing(args.image, force=args.force, what="a token image")
        store = _open(args)
        station.write_image(store, args.token, prepare_okt(store, args.pool), args.image, force=args.force)
        return _out(args, {"image": str(args.image)}, f"OKT image for {args.token} written to {args.image}: "
                    f"'t10k token load-image' writes it to the token")
    result = asyncio.run(station.write_okt(_open(args), args.token, args.pool))
    return _out(args, {"token": args.token, "status": result.status.name, "message": result.message}, result.message)


def _token_status(args: argparse.Namespace) -> int:
    store = _open(args)
    s = station.read_status_image(store, args.token, args.image) if args.image else \
        asyncio.run(station.token_status(store, args.token))
    names = {d.csn: d.name for d in store.drives()}
    errors = [{"drive": names.get(e.csn, e.csn.hex()), "csn": e.csn.hex(), "error_code": f"{int(e.error_code):08X}",
               "error": e.error_code.name, "key_id": e.key_id.hex(), "reported": format_timestamp(e.reported_at)}
              for e in s.errors]
    data = {"token": args.token, "mode": s.mode.name, "led3": s.led3.name, "error_led": s.error_led.name,
            "pool": s.pool, "timestamp": s.timestamp, "time": format_timestamp(s.timestamp), "csns": s.csn_count,
            "packages_held": s.packages_held, "acknowledged": s.acknowledged, "errors": errors,
            "last_write_counter": s.last_write_counter}
    lines = [f"token {args.token}: {s.mode.name}, LED3 {s.led3.name}, error LED {s.error_led.name}",
             f"  timestamp {format_timestamp(s.timestamp)}, {s.csn_count} CSN(s), {s.packages_held} package(s) held, "
             f"{s.acknowledged} acknowledged; last write accepted: counter {s.last_write_counter}"]
    lines += [f"  error: drive {e['drive']} code {e['error_code']} ({e['error']}) key ID {e['key_id']}" for e in errors]
    return _out(args, data, "\n".join(lines))


def _list(args: argparse.Namespace) -> int:
    store = _open(args)
    data = views.everything(store)
    return _out(args, data, views.render_everything(data))


def _show(args: argparse.Namespace) -> int:
    store = _open(args)
    data = views.one(store, args.kind, args.name)
    return _out(args, data, views.render_one(args.kind, data))


def _reconcile(args: argparse.Namespace) -> int:
    store = _open(args)
    settled = asyncio.run(station.reconcile(store, timeout_s=args.timeout))
    lines = _report_settled(settled, quiet=True)
    rows = [{"token": w.token, "kind": w.kind, "counter": w.counter, "started": format_timestamp(w.started),
             "outcome": {True: "applied", False: "not applied", None: "unsettled"}[took]} for w, took in settled]
    _out(args, {"writes": rows}, "\n".join(lines) or "no token write is pending")
    return 1 if any(took is None for _, took in settled) else 0


def _read_key(args: argparse.Namespace, what: str) -> bytes:
    import sys

    if args.key_file is None:
        text, source = sys.stdin.readline(), "standard input"
    else:
        text, source = _read_text(args.key_file, what), str(args.key_file)
    try:
        return parse_db_key(text)
    except StoreError as exc:
        raise StoreError(f"{what} from {source}: {exc}") from None


def _read_text(path: Path, what: str) -> str:
    """A small text file the operator named (a key file), or one line saying why not."""
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise StoreError(f"{path} is not {what}: it is not text") from None
    except OSError as exc:
        raise StoreError(f"cannot read {what} from {path}: {exc.strerror or exc}") from None


def _set_dbkey(args: argparse.Namespace) -> int:
    from .keyadmin import set_dbkey

    store = _open(args)
    count = set_dbkey(store, _read_key(args, "the new database key"))
    where = f"the new key is in {store.dbkey_path}" if store.dbkey_path is not None else \
        f"give the new key from now on (${DBKEY_ENV} or the prompt)"
    return _out(args, {"resealed": count, "dbkey_file": None if store.dbkey_path is None else str(store.dbkey_path)},
                f"database key changed: {count} stored value(s) re-encrypted; {where}")


def _set_backupkey(args: argparse.Namespace) -> int:
    from .keyadmin import set_backupkey

    set_backupkey(_open(args), _read_key(args, "the backup key"))
    return _out(args, {"backup_key": "set"}, "backup key set: later backups use it (keep the old one too)")


def _view_backupkey(args: argparse.Namespace) -> int:
    from .keyadmin import view_backupkey

    key = view_backupkey(_open(args))
    return _out(args, {"backup_key": key.hex()}, key.hex())


def _set_kmsid(args: argparse.Namespace) -> int:
    from .keyadmin import set_kmsid

    set_kmsid(_open(args), args.kms_id)
    return _out(args, {"kms_id": args.kms_id.hex()}, f"KMS ID set to {args.kms_id.hex()}")


def _audit(args: argparse.Namespace) -> int:
    store = _open(args)
    if args.action == "list":
        rows = [r.to_json() for r in store.audit_records()]
        return _out(args, {"records": rows}, "\n".join(
            f"{r['seq']:>6} {r['time']} {r['operator']:<12} {r['action']:<20} "
            + " ".join(f"{k}={v}" for k, v in r["detail"].items()) for r in rows))
    verdict = store.verify_audit()
    _out(args, {"ok": verdict.ok, "records": verdict.records, "problems": list(verdict.problems)},
         f"audit trail of {verdict.records} record(s): " + ("intact" if verdict.ok else "TAMPERED\n  "
                                                             + "\n  ".join(verdict.problems)))
    return 0 if verdict.ok else 1


def _backup(args: argparse.Namespace) -> int:
    from .backup import take_backup

    store = _open(args)
    progress = Progress("backup")
    progress.note(f"encrypting a snapshot of {store.directory} with the backup key")
    info = take_backup(store, "operator request")
    progress.done(f"{info.dump_id} written, {info.size} octets")
    return _out(args, info.to_json(), f"backup {info.dump_id} written")


def _restore(args: argparse.Namespace) -> int:
    from .backup import list_backups, restore

    directory = _store_dir(args.store)
    if (directory / "kms.sqlite3").exists():
        try:
            # an existing KMS: only its Administrator restores over it. Its own key, as any command finds it:
            # --dbkey-file names where the restored key goes, and must not make the store look damaged.
            _open(args, DbKeySource()).close()
        except StoreDamaged:
            pass  # a store that cannot be opened has no logins to ask: the backup key is the authority
    if args.dump_id in (None, "list"):
        found = list_backups(args.source or directory)
        return _out(args, {"backups": [b.to_json() for b in found]}, "\n".join(
            f"{b.dump_id}  {b.to_json()['time']}  KMS {b.kms_id}  {b.reason}" for b in found) or "(no backups)")
    if args.key is None and args.key_file is None:
        raise StoreError("give the backup key that encrypted that backup: --key-file FILE (or --key HEX)")
    try:
        key = parse_db_key(args.key if args.key is not None else _read_text(args.key_file, "a backup key"))
    except StoreError as exc:
        raise StoreError(f"the backup key{'' if args.key_file is None else ' in ' + str(args.key_file)}: {exc}") \
            from None
    progress = Progress("restore")
    progress.note(f"decrypting backup {args.dump_id} from {args.source or directory} into {directory}")
    info = restore(directory, key, args.dump_id, source=args.source, dbkey_from=_dbkey_source(args))
    progress.done(f"{info.dump_id} restored")
    return _out(args, info.to_json() | {"restored_into": str(directory)},
                f"restored {info.dump_id} into {directory} (KMS ID {info.kms_id})")


def _export_keys(args: argparse.Namespace) -> int:
    import sys

    from .exchange import WARNING, export_keys

    store = _open(args)
    keys = store.key_ids() if args.all else args.key
    count = export_keys(store, keys, args.out, args.text, force=args.force)
    print(f"warning: {args.out}: {WARNING}", file=sys.stderr)
    return _out(args, {"exported": count, "file": str(args.out)}, f"{count} key(s) exported to {args.out}")


def _import_keys(args: argparse.Namespace) -> int:
    from .exchange import import_keys

    ids = import_keys(_open(args), args.file)
    return _out(args, {"imported": [k.hex() for k in ids]}, f"{len(ids)} key(s) imported: "
                + ", ".join(k.hex() for k in ids))


def _plan(args: argparse.Namespace) -> int:
    import dataclasses

    from .planner import ROTATION_STEPS, load_plan

    plan = load_plan(args.file)
    if args.rotations_per_year is not None:
        if not 1 <= args.rotations_per_year <= 365:
            raise StoreError("--rotations-per-year must be 1..365")
        plan = dataclasses.replace(plan, rotations_per_year=args.rotations_per_year)
    if args.year < 1:
        raise StoreError("--year must be 1 or later")
    period = (args.year - 1) * plan.rotations_per_year + 1
    horizon = plan.retention_years * plan.rotations_per_year
    rows = []
    for site in plan.sites:
        write, reads = plan.mapping(site.name, period)
        over = plan.first_overbooked(site.name, max(period, horizon))
        rows.append({"site": site.name, "write_key": f"K{write}", "read_keys": [f"K{k}" for k in reads],
                     "keys": 1 + len(reads), "rule_of_thumb": plan.rule_of_thumb(site.name),
                     "overbooked_from": plan.period_label(over) if over else None})
    lines = [f"{plan.period_label(period)} mappings ({plan.retention_years} years' retention, "
             f"{plan.rotations_per_year} rotation(s) a year):"]
    for r in rows:
        lines.append(f"  {r['site']:<14} write {r['write_key']:<5} read {', '.join(r['read_keys']) or '-'}  "
                     f"({r['keys']} keys)")
    lines.append("rule of thumb, (1 + sites sharing) x retention x rotations <= 32:")
    for r in rows:
        verdict = "ok" if r["rule_of_thumb"] <= 32 else f"OVERBOOKED from {r['overbooked_from']}"
        lines.append(f"  {r['site']:<14} {r['rule_of_thumb']:>4}  {verdict}")
    if any(r["overbooked_from"] for r in rows):
        lines += ["each rotation past 32 keys needs these steps for each overbooked pool:",
                  *("  " + step for step in ROTATION_STEPS)]
    return _out(args, {"period": plan.period_label(period), "sites": rows, "rotation_steps": list(ROTATION_STEPS)},
                "\n".join(lines))


def _entity_name(kind: str, name: str) -> str | bytes:
    return parse_key_id(name) if kind == "key" else name


def _remove_key(args: argparse.Namespace) -> int:
    from .entities import remove_key_from_set

    remove_key_from_set(_open(args), args.key_set, args.key)
    return _out(args, {"key_set": args.key_set, "removed": args.key.hex()}, f"key {args.key.hex()} removed from "
                f"{args.key_set}")


def _describe(args: argparse.Namespace) -> int:
    from .entities import describe

    describe(_open(args), args.kind, _entity_name(args.kind, args.name), args.description)
    return _out(args, {"kind": args.kind, "name": args.name}, f"{args.kind} {args.name} described")


def _delete(args: argparse.Namespace) -> int:
    from .entities import delete

    delete(_open(args), args.kind, _entity_name(args.kind, args.name))
    return _out(args, {"deleted": args.name}, f"{args.kind} {args.name} deleted")


def _standby(args: argparse.Namespace) -> int:
    import time

    from .standby import set_standby, sync

    store = _open(args)
    if args.action == "set":
        if args.dir is None:
            raise StoreError("'standby set' needs --dir")
        set_standby(store, args.dir)
        return _out(args, {"standby": str(args.dir)}, f"standby set to {args.dir}")
    from .backup import SUFFIX, backup_dir
    from .standby import standby_of

    target = standby_of(store)
    progress = Progress("standby sync")

    def pending() -> int:
        have = {p.name for p in backup_dir(target).glob(f"*{SUFFIX}")}
        return sum(1 for p in backup_dir(store.directory).glob(f"*{SUFFIX}") if p.name not in have)

    rounds, copied = 0, []
    while True:
        rounds += 1
        todo = pending()
        what = f"round {rounds}{'' if args.count is None else f' of {args.count}'}: " if args.interval else ""
        progress.note(f"{what}copying {todo} new backup set(s) to {target}" if todo
                      else f"{what}{target} has every backup set")
        done = sync(store)
        copied += done
        if done:
            progress.note(f"{what}copied {', '.join(done)}")
        if args.interval is None or (args.count is not None and rounds >= args.count):
            break
        progress.note(f"next round in {args.interval:g} s (Ctrl-C stops)")
        time.sleep(args.interval)
    return _out(args, {"standby": str(target), "rounds": rounds, "copied": copied},
                f"{len(copied)} backup set(s) copied to the standby {target}")


def _failover(args: argparse.Namespace) -> int:
    from .standby import failover

    key = _read_key(args, "the backup key")
    primary = KmsStore.open(args.primary) if args.primary else None  # its own key: $T10K_DBKEY, its key file
    dump_id = failover(_store_dir(args.store), key, primary=primary, dbkey_from=_dbkey_source(args))
    return _out(args, {"restored": dump_id}, f"the standby is now a KMS, restored from {dump_id}")


def _password() -> str:
    import sys

    return sys.stdin.readline().rstrip("\n")


def _login(args: argparse.Namespace) -> int:
    store = _open_store(args)
    token = operators.login(store, args.operator, _password())
    who = operators.operator(store, args.operator)
    note = " (change the default password now: t10k kms passwd)" if who.must_change else ""
    return _out(args, {"session": token, "operator": who.name, "role": who.role.value,
                       "must_change_password": who.must_change},
                f"export T10K_SESSION={token}   # {who.name}, {who.role.value}{note}")


def _logout(args: argparse.Namespace) -> int:
    store = _open_store(args)
    _me(store, args)
    operators.end_session(store, args.session)
    return _out(args, {"logged_out": True}, "logged out (a backup was taken)")


def _passwd(args: argparse.Namespace) -> int:
    store = _open_store(args)
    operators.set_password(store, _me(store, args), _password())
    return _out(args, {"password": "changed"}, "password changed")


def _create_operator(args: argparse.Namespace) -> int:
    store = _open(args)
    operators.create_operator(store, _me(store, args), args.name, operators.Role(args.role), _password())
    return _out(args, {"operator": args.name, "role": args.role}, f"operator {args.name} ({args.role}) created")


def _set_operator_active(args: argparse.Namespace) -> int:
    store = _open(args)
    operators.set_active(store, _me(store, args), args.name, args.state == "active")
    return _out(args, {"operator": args.name, "state": args.state}, f"operator {args.name} is {args.state}")


def _key_state(args: argparse.Namespace) -> int:
    store = _open(args)
    message = operators.request_key_state(store, _me(store, args), args.key, args.kms_command == "reactivate-key")
    return _out(args, {"result": message}, message)


def _set_drive_ip(args: argparse.Namespace) -> int:
    _open(args).set_drive_ip(args.drive, args.ip)
    return _out(args, {"drive": args.drive, "ip": args.ip}, f"drive {args.drive} is at {args.ip}")


def _verify_pool(args: argparse.Namespace) -> int:
    store = _open(args)
    rows = asyncio.run(station.verify_pool(store, args.pool))
    differ = [r for r in rows if not r["ok"]]
    mapping = store.mapping(args.pool)
    text = [f"pool {args.pool}: mapping of {format_timestamp(mapping.timestamp)}; {len(rows) - len(differ)} of "
            f"{len(rows)} drive(s) hold it"] + [f"  {r['drive']:<14} {r['ip']:<15} {r['problem']}" for r in differ]
    _out(args, {"pool": args.pool, "okt_timestamp": mapping.timestamp, "drives": rows}, "\n".join(text))
    return 0 if not differ else 1


def _watch(args: argparse.Namespace) -> int:
    import json as _json
    import signal
    import sys
    import time

    from events import ALL, parse_mqtt_url

    from .watch import Watcher

    host, port = parse_mqtt_url(args.mqtt)
    watcher = Watcher(as_json=args.json)

    async def main() -> int:
        import aiomqtt

        shown = 0
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            async with aiomqtt.Client(host, port) as client:
                await client.subscribe(ALL, qos=1)
                print(f"watching {host}:{port} (Ctrl-C to stop)", file=sys.stderr, flush=True)

                async def read() -> None:
                    nonlocal shown
                    async for message in client.messages:
                        topic = str(message.topic)
                        try:
                            payload = _json.loads(message.payload)  # type: ignore[arg-type]
                        except ValueError:
                            print(f"t10k: warning: {topic}: not a JSON payload, skipped", file=sys.stderr)
                            continue
                        lines = watcher.feed(topic, payload if isinstance(payload, dict) else {"value": payload},
                                             retained=bool(message.retain), received=time.time())
                        for line in lines:
                            print(line, flush=True)
                        shown += bool(lines)
                        if args.count is not None and shown >= args.count:
                            return

                reader = asyncio.ensure_future(read())
                waiter = asyncio.ensure_future(stop.wait())
                await asyncio.wait({reader, waiter}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
                reader.cancel()
                waiter.cancel()
        except aiomqtt.MqttError as exc:
            raise StoreError(f"cannot watch the broker at {host}:{port}: {exc}") from None
        return 0

    return asyncio.run(main())
