"""The live library: the console's MQTT subscriber (as ``t10k kms watch``) and the pushes to
browsers (server-sent events). The model is kms_console.library; this is its asyncio shell."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from events import ALL, parse_mqtt_url
from kms_client.operators import SESSION_IDLE_S

from .library import Alert, Library

log = logging.getLogger("t10k.console.live")
MAX_BACKOFF_S = 5.0


class Hub:
    """The library as last heard from the broker, and a version that every change bumps."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.library = Library()
        self.version = 0
        self.connected = False
        self.problem = ""
        self._changed = asyncio.Event()  # set, and replaced, at every change

    async def _bump(self) -> None:
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def wait(self, version: int, timeout_s: float) -> int:
        """The version after ``version``, or ``version`` itself after ``timeout_s`` with no change."""
        if self.version == version:
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                pass
        return self.version

    async def feed(self, topic: str, payload: dict[str, Any], *, retained: bool) -> Alert | None:
        change = self.library.feed(topic, payload, retained=retained)
        if change.changed:
            await self._bump()
        return change.alert

    async def run(self) -> None:
        """Subscribe for as long as the console runs; reconnect with backoff when the broker goes away."""
        import aiomqtt

        host, port = parse_mqtt_url(self.url)
        backoff = 0.5
        while True:
            try:
                async with aiomqtt.Client(host, port) as client:
                    await client.subscribe(ALL, qos=1)
                    self.connected, self.problem, backoff = True, "", 0.5
                    await self._bump()
                    async for message in client.messages:
                        try:
                            payload = json.loads(message.payload)  # type: ignore[arg-type]
                        except ValueError:
                            log.warning("%s: not a JSON payload, skipped", message.topic)
                            continue
                        alert = await self.feed(str(message.topic), payload if isinstance(payload, dict) else {},
                                                retained=bool(message.retain))
                        if alert is not None:
                            log.warning("ALERT token %s: drive %s error %s key ID %s", alert.token_ip, alert.csn,
                                        alert.error_code, alert.key_id)
            except aiomqtt.MqttError as exc:
                self.connected, self.problem = False, f"the broker at {host}:{port}: {exc}"
                await self._bump()
                await asyncio.sleep(backoff)
                backoff = min(MAX_BACKOFF_S, backoff * 2)


def sse(event: str, data: str) -> bytes:
    """One server-sent event; ``data`` may span lines."""
    return (f"event: {event}\n" + "".join(f"data: {line}\n" for line in data.splitlines() or [""]) + "\n").encode()


KEEPALIVE_S = 15.0
#: A stream ends after the session's idle time and tells the page so: the page stops, instead of
#: reconnecting (which would use the session), so a Library screen left open lets its session expire.
STREAM_LIMIT_S = float(SESSION_IDLE_S)
PAUSED = "live view paused after ten minutes: reload the page to go on (an idle session expires)"


async def stream(hub: Hub, render: Any, is_disconnected: Any, alerts_from: int, *,
                 limit_s: float | None = None) -> Any:
    """The live view for one browser: the library drawn on each change, and each new alert."""
    started = time.monotonic()
    version = -1
    shown = alerts_from
    limit = STREAM_LIMIT_S if limit_s is None else limit_s
    while time.monotonic() - started < limit:
        if await is_disconnected():
            return
        if version != hub.version:
            version = hub.version
            drawn, alerts = render()  # alerts: the texts, newest first
            yield sse("library", drawn)
            total = hub.library.alert_total
            for text in reversed(alerts[:max(0, total - shown)]):
                yield sse("alert", text)
            shown = total
        new = await hub.wait(version, min(KEEPALIVE_S, max(0.0, limit - (time.monotonic() - started))))
        if new == version:
            yield b": keepalive\n\n"
    yield sse("end", PAUSED)
