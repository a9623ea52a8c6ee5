"""Sessions, roles and anti-forgery for the console: the station's own (kms_client/operators.py).

The session cookie carries the session token ``operators.login`` returns, so the console's
sessions are the CLI's: the same ten idle minutes, the same backup at logout and expiry.
The cookie is ``__Host-`` prefixed, Secure, HttpOnly and SameSite=Strict. Every form carries
a token derived (HMAC) from the session and a secret of this console process; a POST without
it, or from another origin, is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass, field

from kms_client import operators

from .errors import CsrfRefused

COOKIE = "__Host-t10k-session"


@dataclass(frozen=True)
class Guard:
    secret: bytes = field(default_factory=lambda: os.urandom(32))

    def csrf_token(self, session: str) -> str:
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, session: str, given: str | None) -> None:
        if not given or not hmac.compare_digest(self.csrf_token(session), given):
            raise CsrfRefused("this form is stale or did not come from this console (no valid anti-forgery token): "
                              "reload the page and try again")


def check_origin(origin: str | None, host: str | None) -> None:
    """A browser names the page a POST came from: it must be this console."""
    if origin is None:
        return
    if origin == "null" or host is None or origin.split("://", 1)[-1] != host:
        raise CsrfRefused(f"a form from {origin} was sent to this console: refused (only its own pages may post)")


def cookie_header(token: str) -> str:
    return (f"{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; "
            f"Max-Age={operators.SESSION_IDLE_S * 6 * 24}")


def clear_cookie_header() -> str:
    return f"{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
