"""The console's request plumbing: one request's store, operator and form, and how a screen
or an action is served (a refusal is drawn on the screen it came from, naming who may act)."""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from kms_client import operators
from kms_client.errors import KmsError, NotFound, RuleViolation, TokenUnreachable
from kms_client.store import KmsStore
from kms_client.storefiles import DbKeySource

from .auth import COOKIE, Guard, check_origin

log = logging.getLogger("t10k.console")
MAX_FORM = 256 * 1024
HERE = Path(__file__).resolve().parent
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Frame-Options": "DENY", "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on its own forms
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store", "Strict-Transport-Security": "max-age=31536000",
}


@dataclass
class Ctx:
    """One request: its store (opened for it, closed after), its operator and its form."""

    request: Request
    store: KmsStore
    who: operators.Operator
    session: str
    csrf: str
    form: dict[str, list[str]] = field(default_factory=dict)

    def get(self, name: str, default: str = "") -> str:
        values = self.form.get(name)
        return values[0].strip() if values else default

    def getlist(self, name: str) -> list[str]:
        return [v.strip() for v in self.form.get(name, []) if v.strip()]

    def require(self, name: str, what: str) -> str:
        value = self.get(name)
        if not value:
            raise KmsError(f"give {what}")
        return value

    def authorize(self, action: str) -> None:
        operators.authorize(self.who, action)


View = Callable[[Ctx], Awaitable[dict[str, Any]]]
Action = Callable[[Ctx], Awaitable[str]]


@dataclass(frozen=True)
class Screen:
    template: str
    permission: str
    view: View
    title: str


class Console:
    def __init__(self, store_dir: Path, *, mqtt: str | None = None, guard: Guard | None = None,
                 dbkey: DbKeySource | None = None) -> None:
        self.store_dir = store_dir
        #: Where the database key is found, as for every 'kms' command (never a prompt: no terminal here).
        self.dbkey = dbkey or DbKeySource(interactive=False)
        self.mqtt = mqtt
        self.guard = guard or Guard()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.hub: Any = None  # live.Hub when --mqtt is given

    def open_store(self) -> KmsStore:
        return KmsStore.open(self.store_dir, dbkey=self.dbkey)

    def render(self, request: Request, template: str, context: dict[str, Any], status: int = 200) -> Response:
        response = self.templates.TemplateResponse(request, template, context | {"mqtt": self.mqtt}, status_code=status)
        response.headers.update(SECURITY_HEADERS)
        return response

    async def context(self, request: Request, store: KmsStore) -> Ctx | Response:
        """The request's operator, or where to send the browser (log in; change the default password)."""
        session = request.cookies.get(COOKIE)
        try:
            who = operators.session_operator(store, session)
        except operators.SessionError as exc:
            target = "/login?" + urllib.parse.urlencode({"next": request.url.path, "why": str(exc) if session else ""})
            return RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        assert session is not None
        ctx = Ctx(request, store, who, session, self.guard.csrf_token(session))
        if request.method == "POST":
            try:
                ctx.form = await read_form(request)
                check_origin(request.headers.get("origin"), request.headers.get("host"))
                self.guard.check_csrf(session, ctx.get("csrf"))
            except KmsError as exc:
                log.warning("refused a form from %s: %s", who.name, exc)
                return self.render(request, "error.html", {"error": str(exc), "title": "Refused", "who": who,
                                                           "csrf": ctx.csrf, "path": request.url.path}, 403)
        if who.must_change and request.url.path != "/passwd":
            return RedirectResponse("/passwd", status_code=303, headers=SECURITY_HEADERS)
        return ctx

    def screen(self, screen: Screen) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.serve(request, screen, None)
        return endpoint

    def action(self, screen: Screen, permission: str, run: Action) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await self.serve(request, screen, (permission, run))
        return endpoint

    async def serve(self, request: Request, screen: Screen, action: tuple[str, Action] | None) -> Response:
        try:
            store = self.open_store()
        except KmsError as exc:
            return self.render(request, "error.html", {"error": str(exc), "title": "KMS store"}, 503)
        try:
            ctx = await self.context(request, store)
            if isinstance(ctx, Response):
                return ctx
            message, error, status = "", "", 200
            if action is not None:
                permission, run = action
                try:
                    ctx.authorize(permission)
                    message = await run(ctx)
                except KmsError as exc:
                    error, status = str(exc), status_of(exc)
                    log.info("%s refused for %s: %s", permission, ctx.who.name, error)
            base = {"who": ctx.who, "csrf": ctx.csrf, "title": screen.title, "message": message, "error": error,
                    "path": request.url.path}
            try:
                ctx.authorize(screen.permission)
                data = await screen.view(ctx)
            except KmsError as exc:
                return self.render(request, "error.html", base | {"error": str(exc)}, status_of(exc))
            return self.render(request, screen.template, base | data, status)
        finally:
            store.close()


def status_of(exc: KmsError) -> int:
    if isinstance(exc, operators.NotPermitted):
        return 403
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, TokenUnreachable):
        return 502
    if isinstance(exc, RuleViolation):
        return 409
    return 400


async def read_form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form, at most MAX_FORM octets (the console's forms are small)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise KmsError(f"a form of more than {MAX_FORM} octets: refused")
    return urllib.parse.parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
