"""The Chapter 1 planner as a chart: keys per pool per year against the 32-key line.

The numbers come from kms_client.planner (the mapping of each site's pool at the end of
each year, and the first overbooked rotation); this module only draws them, as inline SVG
(no script, no external file), with each overbooked point marked and titled.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.sax.saxutils import escape

from kms_client.planner import Plan
from protocol.constants import MAX_MEDIA_KEYS

WIDTH, HEIGHT = 780, 380
LEFT, RIGHT, TOP, BOTTOM = 50, 190, 20, 40
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#ff7f0e")


@dataclass(frozen=True)
class Point:
    year: int
    keys: int
    overbooked: bool


@dataclass(frozen=True)
class Series:
    site: str
    points: tuple[Point, ...]
    overbooked_from: str | None


def series(plan: Plan, years: int) -> list[Series]:
    """Each site's keys at the end of each year 1..years, and whether that year is overbooked."""
    out = []
    horizon = years * plan.rotations_per_year
    for site in plan.sites:
        over = plan.first_overbooked(site.name, horizon)
        points = []
        for year in range(1, years + 1):
            period = year * plan.rotations_per_year
            _, reads = plan.mapping(site.name, period)
            points.append(Point(year, 1 + len(reads), over is not None and period >= over))
        out.append(Series(site.name, tuple(points), plan.period_label(over) if over else None))
    return out


def default_years(plan: Plan) -> int:
    """Past the retention period, where every pool has reached its steady number of keys."""
    return max(3, plan.retention_years + 2)


def render_svg(data: list[Series], years: int) -> str:
    top_keys = max([MAX_MEDIA_KEYS] + [p.keys for s in data for p in s.points])
    y_max = int(top_keys * 1.15) + 1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(year: int) -> float:
        return LEFT + (year - 1) * plot_w / max(1, years - 1)

    def y(keys: float) -> float:
        return TOP + plot_h - keys * plot_h / y_max

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="plan-chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
             f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="keys per pool per year">',
             f'<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#999"/>']
    step = 5 if y_max <= 60 else 10 if y_max <= 150 else 50
    for k in range(0, y_max + 1, step):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(k):.1f}" y2="{y(k):.1f}" stroke="#e4e4e4"/>'
                     f'<text x="{LEFT - 6}" y="{y(k) + 4:.1f}" text-anchor="end" font-size="11">{k}</text>')
    for year in range(1, years + 1):
        parts.append(f'<text x="{x(year):.1f}" y="{TOP + plot_h + 16}" text-anchor="middle" font-size="11">'
                     f'year {year}</text>')
    parts.append(f'<line class="limit" x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(MAX_MEDIA_KEYS):.1f}" '
                 f'y2="{y(MAX_MEDIA_KEYS):.1f}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 4"/>'
                 f'<text x="{LEFT + plot_w - 4}" y="{y(MAX_MEDIA_KEYS) - 5:.1f}" text-anchor="end" font-size="11" '
                 f'fill="#d62728">{MAX_MEDIA_KEYS} keys: what a drive holds</text>')
    for i, s in enumerate(data):
        colour = PALETTE[i % len(PALETTE)]
        site = escape(s.site)
        coords = " ".join(f"{x(p.year):.1f},{y(p.keys):.1f}" for p in s.points)
        parts.append(f'<g class="site" data-site="{site}"><polyline points="{coords}" fill="none" '
                     f'stroke="{colour}" stroke-width="2"/>')
        for p in s.points:
            verdict = "OVERBOOKED" if p.overbooked else "fits"
            cls = "point overbooked" if p.overbooked else "point"
            fill, r = ("#d62728", 6) if p.overbooked else (colour, 3.5)
            parts.append(f'<circle class="{cls}" cx="{x(p.year):.1f}" cy="{y(p.keys):.1f}" r="{r}" fill="{fill}">'
                         f'<title>{site}, year {p.year}: {p.keys} keys ({verdict})</title></circle>')
        legend_y = TOP + 14 + i * 18
        mark = " (overbooked)" if s.overbooked_from else ""
        parts.append(f'<rect x="{WIDTH - RIGHT + 12}" y="{legend_y - 9}" width="12" height="10" fill="{colour}"/>'
                     f'<text x="{WIDTH - RIGHT + 30}" y="{legend_y}" font-size="11">{site}{mark}</text></g>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 6}" text-anchor="middle" font-size="11">'
                 f'keys in each pool\'s mapping at the end of each year</text></svg>')
    return "".join(parts)
