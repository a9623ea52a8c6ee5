"""The console's application: its routes, the login pages and the live library stream."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial
import urllib.parse
from pathlib import Path
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from kms_client import operators, views
from kms_client.errors import KmsError
from kms_client.storefiles import DbKeySource

from . import screens_admin as admin
from . import screens_station as st
from .auth import COOKIE, Guard, check_origin, clear_cookie_header, cookie_header
from .errors import ConsoleError
from .library import FLASHING
from .live import Hub, stream
from .web import HERE, SECURITY_HEADERS, Console, Ctx, Screen, read_form


async def _library_view(c: Ctx) -> dict[str, Any]:
    return {}


LIBRARY = Screen("library.html", "list", _library_view, "Library")


def check_store(store_dir: Path, dbkey: DbKeySource | None = None) -> None:
    """The console serves only a store with operator logins: without them anyone reaching it would act."""
    console = Console(store_dir, dbkey=dbkey)
    store = console.open_store()
    try:
        if not operators.roles_enabled(store):
            raise ConsoleError(f"{store_dir} has no operator logins (made with --no-roles): the console serves only "
                               f"a store with logins, since anyone who reaches it would act without one; make one "
                               f"with 't10k kms init --store NEW'")
    finally:
        store.close()


def make_app(store_dir: Path, *, mqtt: str | None = None, guard: Guard | None = None,
             dbkey: DbKeySource | None = None) -> Starlette:
    check_store(store_dir, dbkey)
    console = Console(store_dir, mqtt=mqtt, guard=guard, dbkey=dbkey)
    if mqtt:
        console.hub = Hub(mqtt)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.ensure_future(console.hub.run()) if console.hub is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    scr, act = console.screen, console.action
    routes = [
        Route("/", lambda r: RedirectResponse("/library", status_code=303)),
        Route("/login", partial(login, console), methods=["GET", "POST"]),
        Route("/logout", partial(logout, console), methods=["POST"]),
        Route("/passwd", partial(passwd, console), methods=["GET", "POST"]),
        Route("/library", scr(LIBRARY)),
        Route("/library/stream", partial(library_stream, console)),
        Route("/tokens", scr(st.TOKENS)),
        Route("/tokens/{name}", scr(st.TOKEN)),
        Route("/tokens/{name}/write-device-keys", act(st.TOKEN, "write-ekt", st.write_device_keys), methods=["POST"]),
        Route("/tokens/{name}/write-media-keys", act(st.TOKEN, "write-okt", st.write_media_keys), methods=["POST"]),
        Route("/mappings", scr(st.MAPPINGS)),
        Route("/mappings/{pool}", act(st.MAPPINGS, "map", st.modify_mapping), methods=["POST"]),
        Route("/mappings/{pool}/apply", act(st.MAPPINGS, "apply", st.apply_mapping), methods=["POST"]),
        Route("/keys", scr(st.KEYS)),
        Route("/keys/create", act(st.KEYS, "create-key", st.create_key), methods=["POST"]),
        Route("/keys/create-key-set", act(st.KEYS, "create-key-set", st.create_key_set), methods=["POST"]),
        Route("/keys/add", act(st.KEYS, "add-key", st.add_key), methods=["POST"]),
        Route("/keys/remove", act(st.KEYS, "remove-key", st.remove_key), methods=["POST"]),
        Route("/keys/deactivate", act(st.KEYS, "deactivate-key", st.deactivate_key), methods=["POST"]),
        Route("/keys/reactivate", act(st.KEYS, "reactivate-key", st.reactivate_key), methods=["POST"]),
        Route("/drives", scr(st.DRIVES)),
        Route("/drives/import", act(st.DRIVES, "import-drive", st.import_drive_action), methods=["POST"]),
        Route("/drives/set-ip", act(st.DRIVES, "set-drive-ip", st.set_drive_ip), methods=["POST"]),
        Route("/pools", scr(st.POOLS)),
        Route("/pools/create", act(st.POOLS, "create-pool", st.create_pool), methods=["POST"]),
        Route("/pools/add-drive", act(st.POOLS, "add-drive", st.add_drive), methods=["POST"]),
        Route("/pools/{pool}/verify", scr(st.VERIFY_POOL)),
        Route("/operators", scr(admin.OPERATORS)),
        Route("/operators/create", act(admin.OPERATORS, "create-operator", admin.create_operator), methods=["POST"]),
        Route("/operators/set-active", act(admin.OPERATORS, "set-operator-active", admin.set_operator_active),
              methods=["POST"]),
        Route("/audit", scr(admin.AUDIT)),
        Route("/audit/verify", scr(admin.AUDIT_VERIFY)),
        Route("/backups", scr(admin.BACKUPS)),
        Route("/backups/take", act(admin.BACKUPS, "backup", admin.take_backup_action), methods=["POST"]),
        Route("/exchange", scr(admin.EXCHANGE)),
        Route("/exchange/export", act(admin.EXCHANGE, "export-keys", admin.export_action), methods=["POST"]),
        Route("/exchange/import", act(admin.EXCHANGE, "import-keys", admin.import_action), methods=["POST"]),
        Route("/plan", scr(admin.PLAN), methods=["GET"]),
        Route("/plan", act(admin.PLAN, "plan", admin.draw_plan), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.console = console
    return app


def _safe_next(target: str) -> str:
    return target if target.startswith("/") and not target.startswith("//") else "/library"


async def login(console: Console, request: Request) -> Response:
    params = request.query_params
    context: dict[str, Any] = {"title": "Log in", "error": params.get("why", ""), "next": _safe_next(params.get("next",
                                                                                                    "/library"))}
    if request.method == "GET":
        return console.render(request, "login.html", context)
    form = await read_form(request)
    name, password = (form.get("operator") or [""])[0], (form.get("password") or [""])[0]
    target = _safe_next((form.get("next") or ["/library"])[0])
    store = console.open_store()
    try:
        check_origin(request.headers.get("origin"), request.headers.get("host"))  # no login from another site
        token = operators.login(store, name, password)
        must_change = operators.operator(store, name).must_change
    except KmsError as exc:
        return console.render(request, "login.html", context | {"error": str(exc), "operator": name}, 401)
    finally:
        store.close()
    response = RedirectResponse("/passwd" if must_change else target, status_code=303, headers=SECURITY_HEADERS)
    response.headers.append("set-cookie", cookie_header(token))
    return response


async def logout(console: Console, request: Request) -> Response:
    store = console.open_store()
    try:
        ctx = await console.context(request, store)
        if isinstance(ctx, Ctx):
            operators.end_session(store, ctx.session)  # a backup is taken, as at the CLI's logout
    finally:
        store.close()
    response = RedirectResponse("/login?" + urllib.parse.urlencode({"why": "logged out (a backup was taken)"}),
                                status_code=303, headers=SECURITY_HEADERS)
    response.headers.append("set-cookie", clear_cookie_header())
    return response


async def passwd(console: Console, request: Request) -> Response:
    store = console.open_store()
    try:
        ctx = await console.context(request, store)
        if not isinstance(ctx, Ctx):
            return ctx
        base = {"who": ctx.who, "csrf": ctx.csrf, "title": "Change password", "path": "/passwd", "error": "",
                "message": ""}
        if request.method == "GET":
            return console.render(request, "passwd.html", base)
        new, again = ctx.get("password"), ctx.get("again")
        try:
            if new != again:
                raise KmsError("the two passwords differ: type the same one twice")
            operators.set_password(store, ctx.who, new)
        except KmsError as exc:
            return console.render(request, "passwd.html", base | {"error": str(exc)}, 400)
        return RedirectResponse("/library", status_code=303, headers=SECURITY_HEADERS)
    finally:
        store.close()


def _render_library(console: Console, request: Request) -> tuple[str, list[str]]:
    hub: Hub = console.hub
    store = console.open_store()
    try:
        data = views.everything(store)
    finally:
        store.close()
    drive_names = {d["csn"]: d["name"] for d in data["drives"]}
    token_names = {t["ip"]: t["name"] for t in data["tokens"]}
    lib = hub.library
    alerts = [a.text(token_names.get(a.token_ip, a.token_ip), drive_names.get(a.csn, a.csn)) for a in lib.alerts]
    template = console.templates.get_template("_library.html")
    html = template.render(lib=lib, hub=hub, drive_names=drive_names, token_names=token_names, alerts=alerts,
                           flashing=FLASHING)
    return html, alerts


async def library_stream(console: Console, request: Request) -> Response:
    store = console.open_store()
    try:
        ctx = await console.context(request, store)
        if not isinstance(ctx, Ctx):
            return Response("log in first", status_code=401, headers=SECURITY_HEADERS)
        operators.authorize(ctx.who, "list")
    except KmsError as exc:
        return Response(str(exc), status_code=403, headers=SECURITY_HEADERS)
    finally:
        store.close()
    if console.hub is None:
        return Response("this console was started without --mqtt: no live view", status_code=404,
                        headers=SECURITY_HEADERS)
    hub: Hub = console.hub
    body = stream(hub, lambda: _render_library(console, request), request.is_disconnected, hub.library.alert_total)
    headers = dict(SECURITY_HEADERS) | {"X-Accel-Buffering": "no"}
    return StreamingResponse(body, media_type="text/event-stream", headers=headers)


__all__ = ["make_app", "COOKIE"]
