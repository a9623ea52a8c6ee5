"""Lab topologies: sites with tokens, drives and a pool mapping, read from TOML.

Site *i* (1-based) gets 198.18.*i*.0/24 in network-namespace mode (the KMS at .1,
tokens from .21, drives from .101) or 127.18.*i*.* on loopback. Each site's pool maps
one key set per key: its own write key, plus the read keys named (seed, Chapter 2).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from protocol.constants import LOOPBACK_BROADCAST, MAX_MEDIA_KEYS
from .errors import TopologyError  # noqa: F401 - re-exported: its home before lab/errors.py

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,23}$")
MAX_SITES = 200
MAX_DRIVES_PER_SITE = 150



@dataclass(frozen=True)
class Site:
    index: int
    name: str
    drives: int
    tokens: tuple[str, ...]
    write_key: str
    read_keys: tuple[str, ...] = ()

    def network(self, netns: bool) -> str:
        return f"198.18.{self.index}" if netns else f"127.18.{self.index}"

    def kms_ip(self, netns: bool) -> str:
        return f"{self.network(netns)}.1"

    def token_ips(self, netns: bool) -> list[str]:
        return [f"{self.network(netns)}.{21 + j}" for j in range(len(self.tokens))]

    def drive_ips(self, netns: bool) -> list[str]:
        return [f"{self.network(netns)}.{101 + k}" for k in range(self.drives)]

    def broadcast(self, netns: bool) -> str:
        return f"{self.network(netns)}.255" if netns else LOOPBACK_BROADCAST

    def drive_names(self) -> list[str]:
        return [f"{self.name}-d{k + 1}" for k in range(self.drives)]

    @property
    def keys(self) -> list[str]:
        return [self.write_key, *self.read_keys]


@dataclass(frozen=True)
class Topology:
    name: str
    sites: tuple[Site, ...] = field(default_factory=tuple)

    @property
    def keys(self) -> list[str]:
        seen: list[str] = []
        for s in self.sites:
            seen += [k for k in s.keys if k not in seen]
        return sorted(seen, key=lambda k: (len(k), k))


def load_topology(path: Path) -> Topology:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise TopologyError(f"topology file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TopologyError(f"{path} is not valid TOML: {exc}") from None
    return parse_topology(data, str(path))


def parse_topology(data: dict[str, object], where: str = "topology") -> Topology:
    name = data.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise TopologyError(f"{where}: 'name' must be lowercase letters, digits and '-' (at most 24)")
    raw_sites = data.get("site")
    if not isinstance(raw_sites, list) or not 1 <= len(raw_sites) <= MAX_SITES:
        raise TopologyError(f"{where}: give 1..{MAX_SITES} [[site]] tables")
    sites, names, tokens = [], set(), set()
    for i, raw in enumerate(raw_sites, start=1):
        at = f"{where}, site {i}"
        if not isinstance(raw, dict):
            raise TopologyError(f"{at}: must be a table")
        site_name = raw.get("name")
        if not isinstance(site_name, str) or not _NAME.match(site_name) or site_name in names:
            raise TopologyError(f"{at}: 'name' must be unique lowercase letters, digits and '-' (at most 24)")
        drives = raw.get("drives")
        if not isinstance(drives, int) or not 1 <= drives <= MAX_DRIVES_PER_SITE:
            raise TopologyError(f"{at} ({site_name}): 'drives' must be 1..{MAX_DRIVES_PER_SITE}")
        site_tokens = raw.get("tokens")
        if not isinstance(site_tokens, list) or not 1 <= len(site_tokens) <= 2 or \
                not all(isinstance(t, str) and _NAME.match(t) and t not in tokens for t in site_tokens):
            raise TopologyError(f"{at} ({site_name}): 'tokens' must name 1 or 2 tokens (a bay has two slots), "
                                f"each unique")
        write_key = raw.get("write_key")
        read_keys = raw.get("read_keys", [])
        if not isinstance(write_key, str) or not isinstance(read_keys, list) or \
                not all(isinstance(k, str) for k in read_keys):
            raise TopologyError(f"{at} ({site_name}): 'write_key' is a key name, 'read_keys' a list of them")
        if write_key in read_keys or len(set(read_keys)) != len(read_keys):
            raise TopologyError(f"{at} ({site_name}): a key is named twice")
        if 1 + len(read_keys) > MAX_MEDIA_KEYS:
            raise TopologyError(f"{at} ({site_name}): {1 + len(read_keys)} keys; a mapping holds at most 32")
        names.add(site_name)
        tokens.update(site_tokens)
        sites.append(Site(i, site_name, drives, tuple(site_tokens), write_key, tuple(read_keys)))
    return Topology(name, tuple(sites))
