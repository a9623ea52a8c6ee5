"""Key planning (seed, Chapter 1): mappings per rotation from sites, DR flows, retention and rotation.

Keys are numbered as the seed numbers them: every rotation each site, in order, gets the
next key (year 5 of eight sites: K33..K40). A site's mapping holds its current write key,
its own earlier keys within retention, and every key within retention of the sites that
send it their DR data. The rule of thumb, (1 + sites sharing) x retention x rotations a
year <= 32, is checked per site; past 32 the plan says when, and how to rotate keys out.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from protocol.constants import MAX_MEDIA_KEYS

from .errors import StoreError

ROTATION_STEPS = (
    "1. Create a new key set and a new key, and assign the new key to the new key set.",
    "2. Remove the oldest key from the drive pool mapping: first remove the key set containing it.",
    "3. If the old key is the only key in its key set, add the key set with the new key and make the new key "
    "the write key.",
    "4. Otherwise save the mapping without transferring it, remove the old key from its key set, and add the "
    "modified key set back to the mapping.",
)


@dataclass(frozen=True)
class PlannedSite:
    name: str
    sends_dr_to: str | None


@dataclass(frozen=True)
class Plan:
    sites: tuple[PlannedSite, ...]
    retention_years: int
    rotations_per_year: int

    def key_number(self, site_index: int, period: int) -> int:
        """The seed's numbering: period p (1-based) of site i (1-based) is K((p-1) * sites + i)."""
        return (period - 1) * len(self.sites) + site_index

    def senders(self, name: str) -> list[int]:
        return [i for i, s in enumerate(self.sites, start=1) if s.sends_dr_to == name]

    def rule_of_thumb(self, name: str) -> int:
        return (1 + len(self.senders(name))) * self.retention_years * self.rotations_per_year

    def mapping(self, name: str, period: int) -> tuple[int, list[int]]:
        """(write key, read keys) of a site's pool in rotation period ``period`` (1 = Day 1)."""
        index = next(i for i, s in enumerate(self.sites, start=1) if s.name == name)
        oldest = max(1, period - self.retention_years * self.rotations_per_year + 1)
        write = self.key_number(index, period)
        reads = [self.key_number(index, p) for p in range(oldest, period)]
        reads += [self.key_number(i, p) for i in self.senders(name) for p in range(oldest, period + 1)]
        return write, sorted(reads)

    def first_overbooked(self, name: str, periods: int) -> int | None:
        for p in range(1, periods + 1):
            write, reads = self.mapping(name, p)
            if 1 + len(reads) > MAX_MEDIA_KEYS:
                return p
        return None

    def period_label(self, period: int) -> str:
        if self.rotations_per_year == 1:
            return f"year {period}"
        year, part = divmod(period - 1, self.rotations_per_year)
        return f"year {year + 1}, rotation {part + 1}"


def load_plan(path: Path) -> Plan:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise StoreError(f"plan file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise StoreError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    return parse_plan(text, str(path))


def parse_plan(text: str, path: str = "the plan") -> Plan:
    """A plan from its TOML text (``path`` names it in errors)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise StoreError(f"{path} is not valid TOML: {exc}") from None
    retention, rotations = data.get("retention_years"), data.get("rotations_per_year")
    if not isinstance(retention, int) or not 1 <= retention <= 100:
        raise StoreError(f"{path}: retention_years must be 1..100")
    if not isinstance(rotations, int) or not 1 <= rotations <= 365:
        raise StoreError(f"{path}: rotations_per_year must be 1..365")
    raw = data.get("site")
    if not isinstance(raw, list) or not raw:
        raise StoreError(f"{path}: give at least one [[site]]")
    sites = []
    for i, s in enumerate(raw, start=1):
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not s["name"]:
            raise StoreError(f"{path}, site {i}: each site needs a name")
        sites.append(PlannedSite(s["name"], s.get("sends_dr_to")))
    names = [s.name for s in sites]
    if len(set(names)) != len(names):
        raise StoreError(f"{path}: a site name appears twice")
    for s in sites:
        if s.sends_dr_to is not None and (s.sends_dr_to not in names or s.sends_dr_to == s.name):
            raise StoreError(f"{path}: {s.name} sends DR data to {s.sends_dr_to!r}, which is not another site")
    return Plan(tuple(sites), retention, rotations)
