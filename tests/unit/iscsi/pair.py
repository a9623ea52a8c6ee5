"""Join a target and an initiator connection in memory (no sockets), h11 style."""

from __future__ import annotations

from drive_daemon.iscsi import IscsiConfig, TargetConnection
from host.iscsi_initiator import Event, InitiatorConnection
from tests.iscsi_lun import MemoryTapeLun

TARGET = "iqn.2026-11.org.t10k-lab:t10000.0011223344556677"


class Pair:
    def __init__(self, *, config: IscsiConfig | None = None, lun: MemoryTapeLun | None = None, fragment: int = 0,
                 discovery: bool = False, **initiator: object) -> None:
        self.config = config or IscsiConfig(target_name=TARGET)
        self.lun = lun or MemoryTapeLun()
        self.target = TargetConnection(self.config, self.lun, portal=("127.0.0.9", 3260))
        self.initiator = InitiatorConnection(initiator="iqn.test:init", target=None if discovery else TARGET,
                                             **initiator)  # type: ignore[arg-type]
        self.fragment = fragment
        self.now = 1000.0
        self.to_target: list[bytes] = []  # every byte string the initiator sent, for inspection

    def _feed(self, receive, data: bytes) -> None:
        if not self.fragment:
            receive(data)
            return
        for i in range(0, len(data), self.fragment):
            receive(data[i:i + self.fragment])

    def pump(self) -> list[Event]:
        """Move bytes both ways until both sides are quiet; the initiator's events."""
        events: list[Event] = []
        for _ in range(10_000):
            out = b"".join(bytes(p) for p in self.initiator.data_to_send())
            if out:
                self.to_target.append(out)
                self._feed(self.target.receive_data, out)
            self.target.process(self.now)
            back = b"".join(bytes(p) for p in self.target.data_to_send())
            if back:
                self._feed(self.initiator.receive_data, back)
            while (event := self.initiator.next_event()) is not None:
                events.append(event)
            if not out and not back:
                return events
        raise AssertionError("the pair never went quiet")

    def send_raw(self, data: bytes) -> bytes:
        """Bytes straight to the target; what it answers (raw)."""
        self.target.receive_data(data)
        self.target.process(self.now)
        return b"".join(bytes(p) for p in self.target.data_to_send())

    def login(self) -> list[Event]:
        self.initiator.start_login()
        return self.pump()
