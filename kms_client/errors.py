"""Errors of the KMS station, each saying what to do instead."""

from __future__ import annotations


class KmsError(Exception):
    """Root of the KMS station's errors."""


class StoreError(KmsError):
    """The store cannot be opened or used (missing, wrong database key, corrupt)."""


class StoreDamaged(StoreError):
    """A file of the store (database, its WAL, the database key) is unreadable; restore from a backup."""


class NotFound(KmsError):
    """A named entity (drive, key, key set, pool, token) does not exist."""


class RuleViolation(KmsError):
    """An action the seed's rules forbid; the message names the rule and the way round it."""

    def __init__(self, rule: str, problem: str, instead: str) -> None:
        super().__init__(f"{problem} ({rule}). {instead}")
        self.rule = rule


class TokenUnreachable(KmsError):
    """No token answered at that address and port."""


class TokenRefused(KmsError):
    """The token answered, but refused the request."""


class ReplyNotAuthentic(KmsError):
    """The reply did not verify under the token secret: not our token, or tampered with."""


class ReplyLost(TokenUnreachable):
    """The request was sent but no complete answer came: the token may or may not have acted."""


class WrongSecret(ReplyNotAuthentic):
    """The peer's answer does not verify under this token's secret: it cannot have accepted our request."""


class WriteUnsettled(KmsError):
    """A token write's answer was lost and the token's status could not be read to settle it."""


class CounterLost(TokenRefused):
    """The token has no replay counter (blank, or its state directory moved aside) and answered
    with a challenge: a RESYNC carrying it sets the counter (push.request_resyncing does it)."""

    def __init__(self, message: str, challenge: bytes) -> None:
        super().__init__(message)
        self.challenge = challenge
