"""The topic scheme (docs/EVENTS.md).

    t10k/<site>/drive/<csn>/state    retained JSON: LED, VOP fields, OKT timestamp
    t10k/<site>/drive/<csn>/event    JSON events: decryption failed, keys cleared, refused offers
    t10k/<site>/token/<ip>/state     retained JSON: mode, LEDs, packages, errors
    t10k/<site>/token/<ip>/event     JSON events: errors reported to the token (the alerts)
"""

from __future__ import annotations

PREFIX = "t10k"
ALL = f"{PREFIX}/#"


def drive_state(site: str, csn: bytes) -> str:
    return f"{PREFIX}/{site}/drive/{csn.hex()}/state"


def drive_event(site: str, csn: bytes) -> str:
    return f"{PREFIX}/{site}/drive/{csn.hex()}/event"


def token_state(site: str, ip: str) -> str:
    return f"{PREFIX}/{site}/token/{ip}/state"


def token_event(site: str, ip: str) -> str:
    return f"{PREFIX}/{site}/token/{ip}/event"
