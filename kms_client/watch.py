"""What ``t10k kms watch`` prints, from MQTT messages (sans-I/O: the CLI owns the broker).

:class:`Watcher` takes each message (topic, JSON payload, retained flag, arrival time) and
returns the lines to print: every line starts with the time the daemon published it
(retained states are as old as they are); a state equal to the last one shown for its
topic is not shown again; a daemon's availability (online, or offline by its MQTT last
will when it died) is shown, and the states of the drives and tokens of an offline daemon
are marked offline (docs/EVENTS.md).
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any

from events import parse_topic

MAX_LISTED = 4
EVENT_MEMORY = 256


def _time(payload: dict[str, Any], received: float, retained: bool) -> str:
    """When the daemon published it; else (a last will) when it arrived, or "earlier" for a retained one."""
    published = payload.get("published")
    if isinstance(published, str) and len(published) >= 19:
        return published[:10] + " " + published[11:19] + "Z"
    if retained:
        return f"{'(earlier)':<20}"
    return _dt.datetime.fromtimestamp(received, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def _count(value: object, what: str) -> str:
    n = len(value) if isinstance(value, list) else int(value) if isinstance(value, int) else 0
    return f"no {what}s" if n == 0 else f"1 {what}" if n == 1 else f"{n} {what}s"


def _body(payload: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in payload.items() if k != "published"}, sort_keys=True, default=str)


@dataclass
class Watcher:
    as_json: bool = False
    _last: dict[str, str] = field(default_factory=dict)  # state/availability topic -> body last shown
    _events: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=EVENT_MEMORY))
    _online: dict[tuple[str, str], bool] = field(default_factory=dict)  # (site, daemon) -> online
    _members: dict[tuple[str, str], dict[str, None]] = field(default_factory=dict)  # (site, daemon) -> entities

    def feed(self, topic: str, payload: dict[str, Any], *, retained: bool, received: float) -> list[str]:
        """The lines to print for one message (none for a repeat)."""
        parsed = parse_topic(topic)
        if parsed is None:
            return []
        body = _body(payload)
        if parsed.what == "event":
            full = topic + json.dumps(payload, sort_keys=True, default=str)
            if full in self._events:  # the same alert delivered twice (QoS 1 redelivery)
                return []
            self._events.append(full)
        elif self._last.get(topic) == body:  # a state re-sent unchanged (reconnect, re-subscribe)
            return []
        else:
            self._last[topic] = body
        site, kind, ident, what = parsed
        daemon = str(payload.get("daemon", ""))
        offline = False
        if what == "availability":
            self._online[(site, ident)] = bool(payload.get("online"))
        elif daemon:
            entity = f"{kind} {ident}"
            self._members.setdefault((site, daemon), {})[entity] = None
            offline = self._online.get((site, daemon)) is False
        when = _time(payload, received, retained)
        if self.as_json:
            return [json.dumps({"time": when, "topic": topic, "payload": payload, "retained": retained,
                                "offline": offline or (what == "availability" and not payload.get("online"))})]
        if what == "availability":
            return [self._availability_line(when, site, ident, payload)]
        line = f"{when} {_line(site, kind, ident, what, payload)}"
        return [line + ("  [daemon offline]" if offline else "")]

    def _availability_line(self, when: str, site: str, daemon: str, payload: dict[str, Any]) -> str:
        members = list(self._members.get((site, daemon), {}))
        serving = ""
        if members:
            listed = ", ".join(members[:MAX_LISTED])
            more = f" and {len(members) - MAX_LISTED} more" if len(members) > MAX_LISTED else ""
            serving = f": {listed}{more}"
        if payload.get("online"):
            return f"{when} {site} daemon {daemon} online{serving}"
        return f"{when} {site} daemon {daemon} OFFLINE ({payload.get('reason', 'gone')}){serving}"


def _line(site: str, kind: str, ident: str, what: str, p: dict[str, Any]) -> str:
    if kind == "token" and what == "event":
        return f"ALERT {site} token {ident}: drive {p.get('csn')} error {p.get('error_code')} key {p.get('key_id')}"
    if kind == "token":
        return (f"{site} token {ident}: {p.get('mode')} LED3 {p.get('led3')} error LED {p.get('error_led')}, "
                f"{_count(p.get('errors'), 'error')}")
    if what == "event":
        return f"{site} drive {ident} ({p.get('ip')}): {p.get('type')}"
    status = " ".join(str(s) for s in (p.get("status1"), p.get("status2")) if s)
    return f"{site} drive {ident} ({p.get('ip')}): LED {p.get('led')}{' ' + status if status else ''} OKT {p.get('okt_time')}"
