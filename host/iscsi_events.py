"""What the initiator's connection reports (events are frozen dataclasses, h11 style)."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.iscsi import SessionParams


@dataclass(frozen=True)
class ScsiReply:
    status: int
    data: bytes
    sense: bytes
    residual: int  # positive: underflow (fewer octets than expected); negative: overflow


# --- events ---------------------------------------------------------------

@dataclass(frozen=True)
class LoginComplete:
    params: SessionParams
    tsih: int
    target_alias: str = ""


@dataclass(frozen=True)
class CommandComplete:
    itt: int
    reply: ScsiReply


@dataclass(frozen=True)
class TextComplete:
    itt: int
    pairs: list[tuple[str, str]]


@dataclass(frozen=True)
class NopComplete:
    itt: int
    data: bytes


@dataclass(frozen=True)
class TmfComplete:
    itt: int
    response: int


@dataclass(frozen=True)
class LogoutComplete:
    itt: int
    response: int


@dataclass(frozen=True)
class Rejected:
    """The target rejected one of our PDUs; ``itt`` is that PDU's tag (if it had one)."""

    itt: int
    reason: int


@dataclass(frozen=True)
class TargetMessage:
    event: int
    params: tuple[int, int, int]


Event = LoginComplete | CommandComplete | TextComplete | NopComplete | TmfComplete | LogoutComplete | Rejected | \
    TargetMessage
