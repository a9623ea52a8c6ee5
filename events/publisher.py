"""A coalescing MQTT publisher that never makes its caller wait.

``state(topic, source)`` records that an entity changed; its payload is computed by
``source()`` at most every ``coalesce_s`` and published retained, so a pool rekey gives
one message per drive, not one per step. ``event(topic, payload)`` queues an alert
(bounded: the oldest are dropped and counted). While the broker is away nothing blocks;
on reconnect every entity's current state is published again.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from typing import Any, Callable
from urllib.parse import urlparse

log = logging.getLogger("t10k.events")

StateSource = Callable[[], dict[str, Any]]


def parse_mqtt_url(url: str) -> tuple[str, int]:
    parsed = urlparse(url if "://" in url else f"mqtt://{url}")
    if parsed.scheme != "mqtt" or not parsed.hostname:
        raise ValueError(f"an MQTT broker is given as mqtt://HOST[:PORT], got {url!r}")
    return parsed.hostname, parsed.port or 1883


class EventPublisher:
    def __init__(self, url: str, *, coalesce_s: float = 0.5, max_events: int = 1000) -> None:
        self.host, self.port = parse_mqtt_url(url)
        self.coalesce_s = coalesce_s
        self._sources: dict[str, StateSource] = {}
        self._dirty: set[str] = set()
        self._events: collections.deque[tuple[str, bytes]] = collections.deque(maxlen=max_events)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
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
        self._events.append((topic, json.dumps(payload, default=str).encode()))
        self._wake.set()

    # --- lifecycle ----------------------------------------------------------------

    @classmethod
    def optional(cls, url: str | None) -> EventPublisher | None:
        """A started publisher for ``--mqtt URL``, or None when no broker was asked for."""
        if url is None:
            return None
        publisher = cls(url)
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
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        import aiomqtt

        backoff = 0.2
        while True:
            try:
                # A short timeout and keepalive: a broker that goes away is noticed in seconds.
                async with aiomqtt.Client(self.host, self.port, keepalive=10, timeout=3) as client:
                    self.connected, backoff = True, 0.2
                    log.info("events: connected to %s:%d", self.host, self.port)
                    self._dirty.update(self._sources)  # the broker may have lost the retained states
                    self._wake.set()
                    await self._pump(client)
            except aiomqtt.MqttError as exc:
                if self.connected:
                    log.warning("events: broker %s:%d lost (%s); the key path carries on", self.host, self.port, exc)
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(5.0, backoff * 2)

    async def _pump(self, client: Any) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._events:
                topic, payload = self._events[0]
                await client.publish(topic, payload, qos=1)
                self._events.popleft()  # only once the broker has it
                self.published += 1
            for topic in list(self._dirty):
                try:
                    payload = json.dumps(self._sources[topic](), default=str).encode()
                except Exception:  # one broken source must not silence the others
                    log.exception("events: cannot describe %s", topic)
                    self._dirty.discard(topic)
                    continue
                await client.publish(topic, payload, qos=1, retain=True)
                self._dirty.discard(topic)
                self.published += 1
            await asyncio.sleep(self.coalesce_s)  # coalesce: what changes meanwhile goes out once
