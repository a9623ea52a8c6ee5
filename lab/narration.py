"""What a scenario says as it runs: the setup, each symptom as it is checked, each recovery step.

A scenario calls ``say(phase, text)`` right after the check the text states has passed, so
what is printed is what was seen. ``t10k lab scenario`` prints the lines, or with --json
gives them as records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from protocol import VopStatus

SETUP, SYMPTOM, RECOVERY = "setup", "symptom", "recovery"
Say = Callable[[str, str], None]


def quiet(phase: str, text: str) -> None:
    """A scenario run for its capture only."""


@dataclass(frozen=True)
class Said:
    phase: str
    text: str
    seconds: float

    def to_json(self) -> dict[str, object]:
        return {"phase": self.phase, "text": self.text, "seconds": round(self.seconds, 3)}

    def render(self) -> str:
        return f"  {self.phase:<9} {self.text}"


def looks(s: VopStatus) -> str:
    """A drive as its panel shows it: 'LED AMBER, VOP Encryption / Need OKT'."""
    fields = " / ".join(f for f in s.status_fields if f) or "-"
    return f"LED {s.led.name}, VOP {fields}"


def names(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
