"""Mapping timestamps: microseconds since the Unix epoch, UTC, as a u64 on the wire."""

from __future__ import annotations

import datetime as _dt
import time


def now_us() -> int:
    return time.time_ns() // 1000


def to_datetime(timestamp_us: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(timestamp_us / 1_000_000, tz=_dt.timezone.utc)


def format_timestamp(timestamp_us: int) -> str:
    """ISO 8601 with microseconds, or "-" for "never"."""
    if timestamp_us == 0:
        return "-"
    return to_datetime(timestamp_us).isoformat(timespec="microseconds").replace("+00:00", "Z")
