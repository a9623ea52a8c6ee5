"""The main job: a whole T10000 encryption site on loopback, in a few seconds.

Two tokens and eight drives at their own 127.x addresses. The KMS enrols the
drives (EKT), maps keys to their pool (OKT) and arms them; then, with only a token
holding an older mapping in the bay, power-cycled drives refuse its keys, as the
seed says, until the current token is back.
"""

from __future__ import annotations

import asyncio
import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drive_daemon.drive import OfferRefused
from kms_client import station
from protocol import VopStatus
from protocol.constants import EncryptionLed, KeyKind
from protocol.timestamps import format_timestamp

from .addresses import LabNet
from .cluster import Lab, LabPlan

POOL = "pool-1"


@dataclass
class Step:
    title: str
    detail: str
    table: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DemoReport:
    steps: list[Step] = field(default_factory=list)
    ok: bool = True
    #: Where the lab ran: its 127.x.y.0/24 and drive-LAN port (--net spelling).
    net: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "net": self.net, "steps": [{"title": s.title, "detail": s.detail, "drives": s.table} for s in self.steps]}


def drive_row(name: str, ip: str, s: VopStatus) -> dict[str, Any]:
    first, second = s.status_fields
    return {
        "drive": name, "ip": ip, "csn": s.csn.hex(), "led": s.led.name, "status1": first, "status2": second,
        "media_keys": s.media_key_count, "okt_timestamp": s.okt_timestamp, "okt_time": format_timestamp(s.okt_timestamp),
    }


async def run_demo(
    workdir: Path, *, plan: LabPlan | None = None, net: LabNet | None = None, progress: Any = None, tap: Any = None,
    on_done: Any = None, on_start: Any = None,
) -> DemoReport:
    """``net`` None (and no plan): free addresses are found; ``on_start(lab)`` once it is up."""
    report = DemoReport()
    refusals: collections.Counter[bytes] = collections.Counter()

    def step(title: str, detail: str, statuses: dict[str, VopStatus] | None = None) -> None:
        table = [drive_row(n, lab.drive_ips[n], s) for n, s in (statuses or {}).items()]
        report.steps.append(Step(title, detail, table))
        if progress:
            progress(report.steps[-1])

    async with Lab(workdir, plan or LabPlan(net=net), tap=tap) as lab:
        report.net = str(lab.net)
        if on_start is not None:
            on_start(lab)
        lab.drives.subscribe(lambda csn, e: refusals.update([csn]) if isinstance(e, OfferRefused) and e.kind is KeyKind.MEDIA else None)
        kms, names = lab.kms, lab.drive_names
        token_a, token_b = lab.token_names

        result = await station.write_ekt(kms, token_a, names, use_pckey=True)
        statuses = await lab.wait_until(lambda s: s.led is EncryptionLed.AMBER, "amber (device keys)")
        step("1. Enrol the drives (EKT, use PCkey)", f"{token_a}: {result.message}. Every drive pulled its device "
             "key; the EKT erased each package once acknowledged. LEDs are amber: Need OKT.", statuses)

        k1 = kms.create_key("first write key")
        kms.create_key_set("KS1")
        kms.add_key_to_set("KS1", k1)
        kms.create_pool(POOL)
        for n in names:
            kms.add_drive_to_pool(POOL, n)
        first = kms.set_mapping(POOL, ["KS1"], k1)
        for token in (token_a, token_b):
            await station.write_okt(kms, token, POOL)
        statuses = await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == first.timestamp,
                                        "red (armed)")
        step("2. Map key K1 to the pool and write two redundant OKTs", f"Mapping timestamp "
             f"{format_timestamp(first.timestamp)} written to {token_a} and {token_b}. Every drive is armed (red).",
             statuses)

        k2 = kms.create_key("second write key")
        kms.create_key_set("KS2")
        kms.add_key_to_set("KS2", k2)
        second = kms.set_mapping(POOL, ["KS1", "KS2"], k2)
        await station.write_okt(kms, token_a, POOL)
        statuses = await lab.wait_until(lambda s: s.okt_timestamp == second.timestamp and s.media_key_count == 2,
                                        "rekeyed")
        step("3. Rekey (Method 1): new key set KS2, write key K2; write only the OKT in " + token_a,
             f"Drives took the mapping of {format_timestamp(second.timestamp)}; {token_b} still holds "
             f"{format_timestamp(first.timestamp)} and keeps announcing it.", statuses)

        await lab.remove_token(token_a)
        refusals.clear()
        lab.power_cycle()
        deadline = asyncio.get_running_loop().time() + 10
        while len(refusals) < len(names) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        statuses = await lab.vop_all()
        refused_by_all = len(refusals) == len(names) and all(
            s.need_okt and s.led is EncryptionLed.AMBER and s.okt_timestamp == second.timestamp for s in statuses.values())
        report.ok &= refused_by_all
        step("4. Power failure with only the outdated token in the bay",
             f"{token_a} removed, drives power-cycled. {token_b} offers the older mapping "
             f"({format_timestamp(first.timestamp)}): refused by {len(refusals)} of {len(names)} drives, which keep "
             f"their stored OKT timestamp and show Need OKT (amber). No error goes to the token.", statuses)

        await lab.insert_token(token_a)
        statuses = await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == second.timestamp,
                                        "red again")
        step(f"5. {token_a} back in the bay", "Drives pulled the current mapping again, with no operator action: "
             "armed (red).", statuses)
        if on_done is not None:
            on_done(lab)
    return report


def render_step(s: Step) -> str:
    lines = [f"\n== {s.title}", f"   {s.detail}"]
    if s.table:
        cols = [("drive", "DRIVE"), ("ip", "IP"), ("csn", "CSN"), ("led", "LED"), ("status1", "STATUS 1"),
                ("status2", "STATUS 2"), ("media_keys", "KEYS"), ("okt_time", "OKT TIMESTAMP")]
        widths = [max(len(h), *(len(str(r[k])) for r in s.table)) for k, h in cols]
        lines.append("   " + "  ".join(h.ljust(w) for (_, h), w in zip(cols, widths, strict=True)))
        for r in s.table:
            lines.append("   " + "  ".join(str(r[k]).ljust(w) for (k, _), w in zip(cols, widths, strict=True)))
    return "\n".join(lines)
