"""The library as the daemons publish it over MQTT (docs/EVENTS.md), sans-I/O.

:class:`Library` takes each message (topic, JSON payload, retained flag) and keeps the
latest state of every drive and token, every daemon's availability (a last will marks it
offline: its drives and tokens are then drawn offline, not as their last state), and the
token alerts. It returns what changed; the console's MQTT task owns the broker.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from typing import Any

from events import parse_topic

ALERT_MEMORY = 50
_SEEN_MEMORY = 256

#: Drive LEDs the seed draws flashing (seed, Chapter 3: a reset drive, holding keys during I/O).
FLASHING = frozenset({"FLASHING_GREEN", "FLASHING_RED"})


@dataclass(frozen=True)
class Alert:
    """A token recorded an error a drive reported (the seed's networked KMS shows it at once)."""

    site: str
    token_ip: str
    csn: str
    error_code: str
    key_id: str
    published: str

    def text(self, token_name: str, drive_name: str) -> str:
        return (f"token {token_name} ({self.token_ip}) recorded error {self.error_code} from drive {drive_name} "
                f"(CSN {self.csn}), key ID {self.key_id}")


@dataclass(frozen=True)
class Change:
    changed: bool
    alert: Alert | None = None


@dataclass
class Library:
    drives: dict[str, dict[str, Any]] = field(default_factory=dict)  # CSN -> state payload (+ site)
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)  # IP -> state payload (+ site)
    daemons: dict[str, dict[str, Any]] = field(default_factory=dict)  # daemon name -> availability payload
    alerts: collections.deque[Alert] = field(default_factory=lambda: collections.deque(maxlen=ALERT_MEMORY))
    alert_total: int = 0
    _seen: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=_SEEN_MEMORY))

    def feed(self, topic: str, payload: dict[str, Any], *, retained: bool) -> Change:
        parsed = parse_topic(topic)
        if parsed is None:
            return Change(False)
        site, kind, ident, what = parsed
        if what == "availability":
            return self._store(self.daemons, ident, payload | {"site": site})
        if what == "state" and kind == "drive":
            return self._store(self.drives, ident, payload | {"site": site})
        if what == "state" and kind == "token":
            return self._store(self.tokens, ident, payload | {"site": site})
        if what == "event" and kind == "token" and not retained:
            full = topic + json.dumps(payload, sort_keys=True, default=str)
            if full in self._seen:  # QoS 1 may deliver an alert twice
                return Change(False)
            self._seen.append(full)
            alert = Alert(site, ident, str(payload.get("csn", "")), str(payload.get("error_code", "")),
                          str(payload.get("key_id", "")), str(payload.get("published", "")))
            self.alerts.appendleft(alert)
            self.alert_total += 1
            return Change(True, alert)
        return Change(False)

    @staticmethod
    def _store(table: dict[str, dict[str, Any]], ident: str, payload: dict[str, Any]) -> Change:
        if table.get(ident) == payload:
            return Change(False)
        table[ident] = payload
        return Change(True)

    def online(self, daemon: str) -> bool | None:
        """True/False from the daemon's availability topic; None when it has said nothing."""
        state = self.daemons.get(daemon)
        return None if state is None else bool(state.get("online"))

    def is_offline(self, state: dict[str, Any]) -> bool:
        return self.online(str(state.get("daemon", ""))) is False

    def offline_reason(self, state: dict[str, Any]) -> str:
        return str(self.daemons.get(str(state.get("daemon", "")), {}).get("reason", "gone"))
