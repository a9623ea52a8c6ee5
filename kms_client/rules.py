"""The KMS's mapping rules (seed, Chapters 2 and 4), as pure checks on plain data."""

from __future__ import annotations

from protocol.constants import MAX_MEDIA_KEYS

from .errors import RuleViolation


def check_mapping(key_sets: dict[str, list[bytes]], write_key_id: bytes) -> list[bytes]:
    """Return the mapping's key IDs (write key first), or say which rule it breaks."""
    if not key_sets:
        raise RuleViolation(
            "a mapping always has at least one key", "the mapping names no key set",
            "Map at least one key set; to empty a pool, map a placeholder key set (seed, Method 3).",
        )
    key_ids: list[bytes] = []
    for name, members in key_sets.items():
        if not members:
            raise RuleViolation("a mapping always has at least one key", f"key set {name!r} is empty",
                                "Add a key to it first, or map another key set.")
        key_ids.extend(k for k in members if k not in key_ids)
    if len(key_ids) > MAX_MEDIA_KEYS:
        raise RuleViolation(
            "at most 32 keys per mapping (limitation 8)", f"the mapping would hold {len(key_ids)} keys",
            "Remove a key set holding old read keys, as the seed's rotation steps describe.",
        )
    if write_key_id not in key_ids:
        raise RuleViolation(
            "the write key is one of the mapping's keys", f"write key {write_key_id.hex()} is in none of the key sets",
            "Choose a write key from the mapped key sets, or add its key set to the mapping.",
        )
    return [write_key_id] + [k for k in key_ids if k != write_key_id]


def check_key_set_size(current: int) -> None:
    if current >= MAX_MEDIA_KEYS:
        raise RuleViolation("at most 32 keys in a key set (limitation 7)", "the key set already holds 32 keys",
                            "Create a new key set for the new key (the seed's Method 1).")


def check_key_set_unmapped(key_set: str, pools: list[str]) -> None:
    if pools:
        raise RuleViolation(
            "an active key set cannot be modified (limitation 9)", f"key set {key_set!r} is mapped to {', '.join(pools)}",
            "Add a new key set to the mapping instead (Method 1), or unmap this one first (Method 3).",
        )


def check_drive_enabled(drive: str, enabled: bool) -> None:
    if not enabled:
        raise RuleViolation(
            "a drive must be enabled for encryption before it joins a pool (limitation 5)",
            f"drive {drive!r} has no device keys yet", "Write an EKT for it with 'use PCkey' first.",
        )


def check_active(key_ids: list[bytes], inactive: set[bytes]) -> None:
    dead = [k.hex() for k in key_ids if k in inactive]
    if dead:
        raise RuleViolation(
            "a deactivated key is not transferred to drives", f"key(s) {', '.join(dead)} are deactivated",
            "Reactivate them (a User and an Administrator both ask), or remove them from the mapped key sets.",
        )
