"""What a sans-I/O state machine hands its shell: bytes and where they go."""

from __future__ import annotations

from dataclasses import dataclass

from .constants import MessageType

Address = tuple[str, int]

#: Stands for "the drive LAN's broadcast address"; the shell knows the real one.
BROADCAST_HOST = "<broadcast>"


@dataclass(frozen=True)
class Transmit:
    to: Address
    message_type: MessageType
    data: bytes

    @property
    def is_broadcast(self) -> bool:
        return self.to[0] == BROADCAST_HOST
