"""A coalescing MQTT publisher that never makes its caller wait.

``state(topic, source)`` records that an entity changed; its payload is computed by
``source()`` at most every ``coalesce_s`` and published retained, so a pool rekey gives
one message per drive, not one per step; a state equal to the one last published is not
published again. ``event(topic, payload)`` queues an alert (bounded: the oldest are
dropped and counted). While the broker is away nothing blocks; on reconnect every
entity's current state is published again.

Each publisher is one daemon process: it connects with an MQTT last will on its
availability topic (``t10k/<site>/daemon/<name>/availability``, retained), publishes
``online`` there when connected and ``offline`` (reason ``stopped``) when stopped; if the
process dies, the broker publishes the will (reason ``connection lost``). Every payload
carries ``daemon`` (that name) and ``published`` (ISO 8601 UTC), so a watcher can tell
when a state was true and whether its daemon is still there.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as _dt
import json
import logging
import os
import socket
from typing import Any, Callable
from urllib.parse import urlparse

from .topics import daemon_availability

log = logging.getLogger("t10k.events")

StateSource = Callable[[], dict[str, Any]]
STOP_GRACE_S = 2.0


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"mqtt://{url}")
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise ValueError(f"an MQTT broker is given as mqtt://HOST[:PORT], got {url!r}")
    return parsed.hostname, parsed.port or 1883


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventPublisher:
    def __init__(self, url: str, *, coalesce_s: float = 0.5, max_events: int = 1000, site: str = "lab",
                 daemon: str | None = None) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.coalesce_s = coalesce_s
        self.daemon = daemon or f"{socket.gethostname()}-{os.getpid()}"
        self.availability = daemon_availability(site, self.daemon)
        self._sources: dict[str, StateSource] = {}
        self._dirty: set[str] = set()
        self._last: dict[str, str] = {}  # per state topic, the body last published (no duplicates)
        self._events: collections.deque[tuple[str, dict[str, Any]]] = collections.deque(maxlen=max_events)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()  # ends a reconnect backoff at once
        self.connected = False
        self.published = 0
        self.dropped = 0

    # --- what daemons call (synchronous, O(1)) -------------------------------

    def state(self, topic: str, source: StateSource) -> None:
        self._sources[topic] = source
        self._dirty.add(topic)
        self._wake.set()

    def event(self, topic: str, payload: dict[str, Any]) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append((topic, payload | {"published": _now()}))
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    def optional(cls, url: str | None, *, site: str = "lab", daemon: str | None = None) -> EventPublisher | None:
        """A started publisher for ``--mqtt URL``, or None when no broker was asked for."""
        if url is None:
            return None
        publisher = cls(url, site=site, daemon=daemon)
        publisher.start()
        return publisher

    async def __aenter__(self) -> EventPublisher:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mqtt {self.host}:{self.port}")

    async def stop(self) -> None:
        """Publish what is pending and ``offline`` (for at most STOP_GRACE_S), then disconnect."""
        if self._task is None:
            return
        self._stopping = True
        self._stopped.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), STOP_GRACE_S)
        except Exception:  # a timeout, or a broker that is away: it must not hold the daemon up
            pass
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None

    def _payload(self, body: dict[str, Any]) -> bytes:
        return json.dumps(body | {"daemon": self.daemon, "published": _now()}, default=str).encode()

    async def _run(self) -> None:
        import aiomqtt

        backoff = 0.2
        # The broker publishes the will when it loses us, at a time we cannot know: no "published".
        will = aiomqtt.Will(self.availability, json.dumps({"online": False, "reason": "connection lost",
                                                           "daemon": self.daemon}).encode(), qos=1, retain=True)
        while not self._stopping:
            try:
                # A short timeout and keepalive: a broker that goes away is noticed in seconds.
                async with aiomqtt.Client(self.host, self.port, keepalive=10, timeout=3, will=will) as client:
                    self.connected, backoff = True, 0.2
                    log.info("events: connected to %s:%d as %s", self.host, self.port, self.daemon)
                    await client.publish(self.availability, self._payload({"online": True, "pid": os.getpid()}),
                                         qos=1, retain=True)
                    self._dirty.update(self._sources)  # the broker may have lost the retained states
                    self._last.clear()
                    self._wake.set()
                    await self._pump(client)
                    await client.publish(self.availability, self._payload({"online": False, "reason": "stopped"}),
                                         qos=1, retain=True)
                    return
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("events: broker %s:%d lost (%s); the key path carries on", self.host, self.port, exc)
                self.connected = False
                if self._stopping:
                    return
                try:
                    await asyncio.wait_for(self._stopped.wait(), backoff)
                except asyncio.TimeoutError:
                    pass
                backoff = min(5.0, backoff * 2)

    async def _pump(self, client: Any) -> None:
        """Until stopped: events first (QoS 1), then each changed state once; returns when stopping."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                topic, body = self._events[0]
                await client.publish(topic, self._payload(body), qos=1)
                self._events.popleft()  # only once the broker has it
                self.published += 1
            for topic in list(self._dirty):
                # Clean before the await: a change while this publish is in flight marks it dirty
                # again and goes out next round (discarding after the await lost that change).
                self._dirty.discard(topic)
                try:
                    body = self._sources[topic]()
                    text = json.dumps(body, default=str, sort_keys=True)
                except Exception:  # one broken source must not silence the others
                    log.exception("events: cannot describe %s", topic)
                    continue
                if self._last.get(topic) != text:
                    try:
                        await client.publish(topic, self._payload(body), qos=1, retain=True)
                    except BaseException:
                        self._dirty.add(topic)  # not published: again after the reconnect
                        raise
                    self._last[topic] = text
                    self.published += 1
            if self._stopping:
                return
            await asyncio.sleep(self.coalesce_s)  # coalesce: what changes meanwhile goes out once
