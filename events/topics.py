"""The topic scheme (docs/EVENTS.md).

    t10k/<site>/drive/<csn>/state              retained JSON: LED, VOP fields, OKT timestamp
    t10k/<site>/drive/<csn>/event              JSON events: decryption failed, keys cleared, refused offers
    t10k/<site>/token/<ip>/state               retained JSON: mode, LEDs, packages, errors
    t10k/<site>/token/<ip>/event               JSON events: errors reported to the token (the alerts)
    t10k/<site>/daemon/<name>/availability     retained JSON: online, or offline (the MQTT last will)
"""

from __future__ import annotations

from typing import NamedTuple

PREFIX = "t10k"
ALL = f"{PREFIX}/#"
AVAILABILITY = "availability"


def drive_state(site: str, csn: bytes) -> str:
    return f"{PREFIX}/{site}/drive/{csn.hex()}/state"


def drive_event(site: str, csn: bytes) -> str:
    return f"{PREFIX}/{site}/drive/{csn.hex()}/event"


def token_state(site: str, ip: str) -> str:
    return f"{PREFIX}/{site}/token/{ip}/state"


def token_event(site: str, ip: str) -> str:
    return f"{PREFIX}/{site}/token/{ip}/event"


def daemon_availability(site: str, daemon: str) -> str:
    """One per daemon process (a drive host serves many drives but has one connection, one will)."""
    return f"{PREFIX}/{site}/daemon/{daemon}/{AVAILABILITY}"


class Topic(NamedTuple):
    site: str
    kind: str  # drive, token, daemon
    ident: str  # a CSN, a token's IP, a daemon's name
    what: str  # state, event, availability


def parse_topic(topic: str) -> Topic | None:
    """The parts of one of our topics, or None for anything else under the prefix."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != PREFIX:
        return None
    return Topic(parts[1], parts[2], parts[3], parts[4])
