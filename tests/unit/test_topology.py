"""Topologies: the seed's eight-site example ships and reproduces its Day 1 mappings."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.topology import TopologyError, load_topology, parse_topology

ROOT = Path(__file__).resolve().parents[2]

# The seed's "Drive pool mappings in use on Day 1" table.
DAY_1 = {
    "tokyo": ("K1", []), "san-francisco": ("K2", []), "new-york": ("K3", ["K2", "K4", "K5"]),
    "chicago": ("K4", []), "london": ("K5", ["K1", "K3", "K6", "K7", "K8"]), "singapore": ("K6", []),
    "frankfurt": ("K7", []), "sao-paulo": ("K8", []),
}


def test_the_shipped_topology_is_the_seeds_day_1() -> None:
    t = load_topology(ROOT / "lab" / "topologies" / "company-xyz.toml")
    assert {s.name: (s.write_key, list(s.read_keys)) for s in t.sites} == DAY_1
    assert t.keys == [f"K{i}" for i in range(1, 9)]
    london = t.sites[4]
    assert london.token_ips(True) == ["198.18.5.21", "198.18.5.22"] and london.broadcast(True) == "198.18.5.255"
    assert london.drive_ips(False) == ["127.18.5.101", "127.18.5.102"]


@pytest.mark.parametrize(("data", "message"), [
    ({"site": []}, "'name'"),
    ({"name": "x"}, "site"),
    ({"name": "x", "site": [{"name": "a", "drives": 0, "tokens": ["t"], "write_key": "K1"}]}, "'drives'"),
    ({"name": "x", "site": [{"name": "a", "drives": 1, "tokens": ["t", "u", "v"], "write_key": "K1"}]}, "two slots"),
    ({"name": "x", "site": [{"name": "a", "drives": 1, "tokens": ["t"], "write_key": "K1"},
                            {"name": "a", "drives": 1, "tokens": ["u"], "write_key": "K2"}]}, "unique"),
    ({"name": "x", "site": [{"name": "a", "drives": 1, "tokens": ["t"], "write_key": "K1",
                             "read_keys": [f"R{i}" for i in range(32)]}]}, "at most 32"),
    ({"name": "x", "site": [{"name": "a", "drives": 1, "tokens": ["t"], "write_key": "K1",
                             "read_keys": ["K1"]}]}, "named twice"),
])
def test_bad_topologies_say_what_is_wrong(data: dict[str, object], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse_topology(data)


def test_a_file_that_is_not_toml(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text("name = [")
    with pytest.raises(TopologyError, match="not valid TOML"):
        load_topology(tmp_path / "t.toml")
