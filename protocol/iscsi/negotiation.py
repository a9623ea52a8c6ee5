"""Operational parameter negotiation (RFC 7143 sections 6 and 13), the same for both sides.

The target answers offers with :func:`respond`; the initiator offers its preferences and
reads the answers with :func:`accept_answers`; both turn the agreed values into the
same :class:`SessionParams`. Login keys (names, SessionType, AuthMethod, CHAP) are the
login state machines' business.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .constants import MAX_BURST_LIMIT, MIN_RECV_DATA_SEGMENT


class Kind(enum.Enum):
    LIST = "list"          # the responder picks the first offered value it supports
    AND = "and"            # Yes only if both say Yes
    OR = "or"              # Yes if either says Yes
    MIN = "min"            # the smaller number
    MAX = "max"            # the larger number
    DECLARATIVE = "declarative"  # each side states its own value


#: key: (kind, lowest, highest) for numbers; the defaults of RFC 7143 section 13.
KEYS: dict[str, tuple[Kind, int, int]] = {
    "HeaderDigest": (Kind.LIST, 0, 0),
    "DataDigest": (Kind.LIST, 0, 0),
    "MaxConnections": (Kind.MIN, 1, 65535),
    "InitialR2T": (Kind.OR, 0, 0),
    "ImmediateData": (Kind.AND, 0, 0),
    "MaxRecvDataSegmentLength": (Kind.DECLARATIVE, MIN_RECV_DATA_SEGMENT, 0xFFFFFF),
    "MaxBurstLength": (Kind.MIN, 512, MAX_BURST_LIMIT),
    "FirstBurstLength": (Kind.MIN, 512, MAX_BURST_LIMIT),
    "DefaultTime2Wait": (Kind.MAX, 0, 3600),
    "DefaultTime2Retain": (Kind.MIN, 0, 3600),
    "MaxOutstandingR2T": (Kind.MIN, 1, 65535),
    "DataPDUInOrder": (Kind.OR, 0, 0),
    "DataSequenceInOrder": (Kind.OR, 0, 0),
    "ErrorRecoveryLevel": (Kind.MIN, 0, 2),
    # markers are gone from RFC 7143; older initiators still offer IFMarker=No/OFMarker=No
    "IFMarker": (Kind.AND, 0, 0),
    "OFMarker": (Kind.AND, 0, 0),
}

DEFAULTS: dict[str, str] = {
    "HeaderDigest": "None",
    "DataDigest": "None",
    "MaxConnections": "1",
    "InitialR2T": "Yes",
    "ImmediateData": "Yes",
    "MaxRecvDataSegmentLength": "8192",
    "MaxBurstLength": "262144",
    "FirstBurstLength": "65536",
    "DefaultTime2Wait": "2",
    "DefaultTime2Retain": "20",
    "MaxOutstandingR2T": "1",
    "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes",
    "ErrorRecoveryLevel": "0",
    "IFMarker": "No",
    "OFMarker": "No",
}

#: Keys of the login itself: not operational parameters, never answered NotUnderstood here.
LOGIN_KEYS = frozenset({"InitiatorName", "InitiatorAlias", "TargetName", "TargetAlias", "SessionType",
                        "TargetAddress", "TargetPortalGroupTag", "AuthMethod", "CHAP_A", "CHAP_I", "CHAP_C",
                        "CHAP_N", "CHAP_R", "SendTargets"})


def parse_number(value: str) -> int:
    """A numerical value: decimal, or hexadecimal with 0x (RFC 7143 5.1)."""
    v = value.strip()
    if v[:2].lower() == "0x":
        return int(v[2:], 16)
    if not v.isdigit():
        raise ValueError(f"{value!r} is not a number")
    return int(v)


def _boolean(value: str) -> bool:
    if value not in ("Yes", "No"):
        raise ValueError(f"{value!r} is not Yes or No")
    return value == "Yes"


def resolve(key: str, offered: str, ours: str) -> str:
    """The outcome of ``key`` when one side offers ``offered`` and the other holds ``ours``.

    Raises ValueError when the offer is not a valid value of the key (answer ``Reject``).
    """
    kind, low, high = KEYS[key]
    if kind is Kind.LIST:
        supported = [v.strip() for v in ours.split(",")]
        for value in offered.split(","):
            if value.strip() in supported:
                return value.strip()
        return "Reject"
    if kind is Kind.AND:
        return "Yes" if _boolean(offered) and _boolean(ours) else "No"
    if kind is Kind.OR:
        return "Yes" if _boolean(offered) or _boolean(ours) else "No"
    number = parse_number(offered)
    if not low <= number <= high:
        raise ValueError(f"{key}={offered} outside {low}..{high}")
    if kind is Kind.MIN:
        return str(min(number, parse_number(ours)))
    if kind is Kind.MAX:
        return str(max(number, parse_number(ours)))
    return str(number)


def respond(offers: list[tuple[str, str]], ours: dict[str, str]) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The target's answers to operational ``offers`` and what was agreed.

    ``ours`` holds the target's values (its preferred value or supported list per key;
    MaxRecvDataSegmentLength is its own declaration, sent back whenever the initiator
    declares its). Agreed values are keyed by name; the initiator's declared
    MaxRecvDataSegmentLength is kept under ``"initiator.MaxRecvDataSegmentLength"``.
    """
    answers: list[tuple[str, str]] = []
    agreed: dict[str, str] = {}
    for key, value in offers:
        if key in LOGIN_KEYS:
            continue
        if key not in KEYS:
            answers.append((key, "NotUnderstood"))
            continue
        if KEYS[key][0] is Kind.DECLARATIVE:
            try:
                agreed["initiator." + key] = resolve(key, value, value)
            except ValueError:
                answers.append((key, "Reject"))
                continue
            answers.append((key, ours.get(key, DEFAULTS[key])))
            continue
        try:
            result = resolve(key, value, ours.get(key, DEFAULTS[key]))
        except ValueError:
            answers.append((key, "Reject"))
            continue
        answers.append((key, result))
        if result != "Reject":
            agreed[key] = result
    return answers, agreed


def accept_answers(offered: dict[str, str], answers: list[tuple[str, str]]) -> dict[str, str]:
    """What the initiator agreed, from its offers and the target's answers.

    Raises ValueError when an answer is not a possible outcome of the offer.
    """
    agreed: dict[str, str] = {}
    for key, value in answers:
        if key not in KEYS:
            continue
        if KEYS[key][0] is Kind.DECLARATIVE:
            agreed["target." + key] = resolve(key, value, value)
            continue
        if value in ("NotUnderstood", "Irrelevant", "Reject"):
            continue
        mine = offered.get(key)
        if mine is None:  # the target offered it: answer with what we would agree (we accept its value)
            agreed[key] = value
        elif resolve(key, mine, value) != value:
            raise ValueError(f"the target answered {key}={value} to our {key}={mine}")
        else:
            agreed[key] = value
    return agreed


@dataclass(frozen=True)
class SessionParams:
    """The operational parameters in force in full feature phase."""

    initiator_max_recv: int = 8192   # the most the target may put in one PDU to the initiator
    target_max_recv: int = 8192      # the most the initiator may put in one PDU to the target
    header_digest: bool = False
    data_digest: bool = False
    initial_r2t: bool = True
    immediate_data: bool = True
    first_burst: int = 65536
    max_burst: int = 262144
    max_outstanding_r2t: int = 1
    data_pdu_in_order: bool = True
    data_sequence_in_order: bool = True
    error_recovery_level: int = 0
    time2wait: int = 2
    time2retain: int = 20
    max_connections: int = 1

    @classmethod
    def from_agreed(cls, agreed: dict[str, str]) -> SessionParams:
        def get(key: str) -> str:
            return agreed.get(key, DEFAULTS[key.split(".")[-1]])
        return cls(
            initiator_max_recv=parse_number(get("initiator.MaxRecvDataSegmentLength")),
            target_max_recv=parse_number(get("target.MaxRecvDataSegmentLength")),
            header_digest=get("HeaderDigest") == "CRC32C",
            data_digest=get("DataDigest") == "CRC32C",
            initial_r2t=get("InitialR2T") == "Yes",
            immediate_data=get("ImmediateData") == "Yes",
            first_burst=parse_number(get("FirstBurstLength")),
            max_burst=parse_number(get("MaxBurstLength")),
            max_outstanding_r2t=parse_number(get("MaxOutstandingR2T")),
            data_pdu_in_order=get("DataPDUInOrder") == "Yes",
            data_sequence_in_order=get("DataSequenceInOrder") == "Yes",
            error_recovery_level=parse_number(get("ErrorRecoveryLevel")),
            time2wait=parse_number(get("DefaultTime2Wait")),
            time2retain=parse_number(get("DefaultTime2Retain")),
            max_connections=parse_number(get("MaxConnections")),
        )
