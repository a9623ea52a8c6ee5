"""The plan reproduces the seed's Chapter 1 tables exactly."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kms_client.errors import StoreError
from kms_client.planner import load_plan

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "lab" / "topologies" / "company-xyz-plan.toml"


def _keys(text: str) -> list[int]:
    return [int(k.strip().lstrip("K")) for k in text.split(",") if k.strip()]


# "Drive pool mappings in use on Day 1", as the seed prints them.
DAY_1 = {"Tokyo": (1, ""), "San Francisco": (2, ""), "New York": (3, "K2, K4, K5"), "Chicago": (4, ""),
         "London": (5, "K1, K3, K6, K7, K8"), "Singapore": (6, ""), "Frankfurt": (7, ""), "Sao Paulo": (8, "")}
# "At the start of Year 5 of operation, the drive pool mappings in our example environment will look like"
YEAR_5 = {
    "Tokyo": (33, "K1, K9, K17, K25"),
    "San Francisco": (34, "K2, K10, K18, K26"),
    "New York": (35, "K2, K3, K4, K5, K10, K11, K12, K13, K18, K19, K20, K21, K26, K27, K28, K29, K34, K36, K37"),
    "Chicago": (36, "K4, K12, K20, K28"),
    "London": (37, "K1, K3, K5, K6, K7, K8, K9, K11, K13, K14, K15, K16, K17, K19, K21, K22, K23, K24, K25, K27, "
                   "K29, K30, K31, K32, K33, K35,  K38, K39, K40"),
    "Singapore": (38, "K6, K14, K22, K30"),
    "Frankfurt": (39, "K7, K15, K23, K31"),
    "Sao Paulo": (40, "K8, K16, K24, K32"),
}


@pytest.mark.parametrize(("period", "table"), [(1, DAY_1), (5, YEAR_5)], ids=["day-1", "year-5"])
def test_the_seeds_tables(period: int, table: dict[str, tuple[int, str]]) -> None:
    plan = load_plan(PLAN)
    assert {s.name: plan.mapping(s.name, period) for s in plan.sites} == {
        name: (write, _keys(reads)) for name, (write, reads) in table.items()}


def test_forty_keys_new_york_twenty_london_thirty() -> None:
    plan = load_plan(PLAN)
    assert max(plan.mapping(s.name, 5)[0] for s in plan.sites) == 40
    assert 1 + len(plan.mapping("New York", 5)[1]) == 20
    assert 1 + len(plan.mapping("London", 5)[1]) == 30


def test_rule_of_thumb_30_and_120() -> None:
    yearly = load_plan(PLAN)
    assert yearly.rule_of_thumb("London") == 30 and yearly.first_overbooked("London", 5) is None
    quarterly = dataclasses.replace(yearly, rotations_per_year=4)
    assert quarterly.rule_of_thumb("London") == 120
    first = quarterly.first_overbooked("London", 20)
    assert first is not None and quarterly.period_label(first) == "year 2, rotation 2"
    assert 1 + len(quarterly.mapping("London", first)[1]) > 32 >= 1 + len(quarterly.mapping("London", first - 1)[1])


def test_plan_cli_flags_overbooking_with_the_rotation_steps() -> None:
    out = subprocess.run([sys.executable, "-m", "lab.cli", "kms", "plan", str(PLAN), "--year", "5",
                          "--rotations-per-year", "4", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    london = next(s for s in report["sites"] if s["site"] == "London")
    assert london["rule_of_thumb"] == 120 and london["overbooked_from"] == "year 2, rotation 2"
    assert report["rotation_steps"][0].startswith("1. Create a new key set")


@pytest.mark.parametrize(("content", "message"), [
    ("retention_years = 0\nrotations_per_year = 1", "retention_years"),
    ("retention_years = 5\nrotations_per_year = 1", "at least one"),
    ('retention_years = 5\nrotations_per_year = 1\n[[site]]\nname = "A"\nsends_dr_to = "B"', "not another site"),
])
def test_bad_plans(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "p.toml").write_text(content)
    with pytest.raises(StoreError, match=message):
        load_plan(tmp_path / "p.toml")
