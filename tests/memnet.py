"""An in-memory drive LAN for sans-I/O tests: Tokens and Drives joined without sockets.

Every transmit is decoded from its bytes, as a peer would, and delivered; time is
simulated, so retries and spreads run instantly. ``drop`` simulates loss.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import protocol as p
from drive_daemon.drive import Drive
from drive_daemon.drive import Event as DriveEvent
from protocol.constants import DRIVE_PORT, TOKEN_LAN_PORT, MessageType
from token_daemon.memory import TokenMemory
from token_daemon.token import Event as TokenEvent
from token_daemon.token import Token


@dataclass
class MemoryLan:
    now: float = 1_000.0
    tokens: dict[str, Token] = field(default_factory=dict)
    drives: dict[str, Drive] = field(default_factory=dict)
    drop: Callable[[str, p.Transmit], bool] = lambda sender, t: False
    wire: list[tuple[str, p.Transmit]] = field(default_factory=list)
    drive_events: list[tuple[str, DriveEvent]] = field(default_factory=list)
    token_events: list[tuple[str, TokenEvent]] = field(default_factory=list)
    _queue: deque[tuple[str, p.Transmit]] = field(default_factory=deque)
    _counters: dict[str, int] = field(default_factory=dict)

    def add_token(self, ip: str, secret: bytes) -> Token:
        self.tokens[ip] = Token(TokenMemory.blank(), secret)
        return self.tokens[ip]

    def add_drive(self, ip: str, csn: bytes, pckey: bytes, *, seed: int = 0) -> Drive:
        self.drives[ip] = Drive(csn, pckey, rng=random.Random(seed))
        return self.drives[ip]

    def manage(self, token_ip: str, message: p.Message, secret: bytes, *, counter: int | None = None) -> p.Message:
        """Send one authenticated management request; returns the verified reply."""
        counter = counter if counter is not None else self._counters.get(token_ip, 0) + 1
        self._counters[token_ip] = max(counter, self._counters.get(token_ip, 0))
        reply = self._exchange(token_ip, message, secret, counter)
        if isinstance(reply, p.MgmtChallenge):  # a blank token: RESYNC first, as the KMS client does
            self._exchange(token_ip, p.Resync(reply.challenge), secret, max(counter - 1, 0))
            reply = self._exchange(token_ip, message, secret, counter)
        return reply

    def _exchange(self, token_ip: str, message: p.Message, secret: bytes, counter: int) -> p.Message:
        data = p.encode_authenticated(message, secret=secret, counter=counter)
        out = self.tokens[token_ip].receive_management_bytes(data, int(self.now * 1e6))
        self._token_output(token_ip, out)
        assert out.reply is not None
        reply = p.open_frame(out.reply, secret)
        assert reply.is_reply
        return reply.message  # type: ignore[return-value]

    def press_reset(self, token_ip: str) -> None:
        self._token_output(token_ip, self.tokens[token_ip].press_reset())

    def _token_output(self, ip: str, out: object) -> None:
        self.token_events += [(ip, e) for e in out.events]  # type: ignore[attr-defined]
        for t in out.sends:  # type: ignore[attr-defined]
            self._queue.append((ip, t))

    def _drive_output(self, ip: str, out: object) -> None:
        self.drive_events += [(ip, e) for e in out.events]  # type: ignore[attr-defined]
        for t in out.sends:  # type: ignore[attr-defined]
            self._queue.append((ip, t))

    def run(self, *, horizon_s: float = 60.0) -> None:
        """Deliver everything, firing drive timers, until nothing is left within the horizon."""
        end = self.now + horizon_s
        while True:
            while self._queue:
                sender, t = self._queue.popleft()
                self.wire.append((sender, t))
                if not self.drop(sender, t):
                    self._deliver(sender, t)
            deadlines = [(d.next_deadline(), ip) for ip, d in self.drives.items() if d.next_deadline() is not None]
            if not deadlines:
                return
            due, _ = min(deadlines)
            if due > end:
                return
            self.now = max(self.now, due)
            for ip, d in self.drives.items():
                nd = d.next_deadline()
                if nd is not None and nd <= self.now:
                    self._drive_output(ip, d.tick(self.now))

    def _deliver(self, sender: str, t: p.Transmit) -> None:
        frame = p.decode(t.data)
        if t.is_broadcast:
            for ip, d in self.drives.items():
                self._drive_output(ip, d.receive(frame, (sender, TOKEN_LAN_PORT), self.now))
        elif t.to[0] in self.tokens:
            out = self.tokens[t.to[0]].receive_lan(frame, (sender, DRIVE_PORT), int(self.now * 1e6))
            self._token_output(t.to[0], out)
        elif t.to[0] in self.drives:
            self._drive_output(t.to[0], self.drives[t.to[0]].receive(frame, (sender, TOKEN_LAN_PORT), self.now))

    def announce(self, token_ip: str) -> None:
        a = self.tokens[token_ip].announcement()
        if a is not None:
            self._queue.append((token_ip, a))

    def sent(self, message_type: MessageType) -> list[tuple[str, p.Transmit]]:
        return [(s, t) for s, t in self.wire if t.message_type is message_type]
