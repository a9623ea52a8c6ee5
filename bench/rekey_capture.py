"""A pool rekey in one process, for a capture: one token and N drives hosted together on
loopback, both taps writing one pcap (bench/pcap_decode.py decodes what this records).

bench/pool_scale.py measures the same rekey with the token and drive host in separate
processes, as deployed; this one exists so that one tap sees every datagram in order.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bench.kms_pool import map_pool
from drive_daemon.drive import DeviceKeysAccepted, MediaKeysAccepted
from drive_daemon.service import DriveHost, DriveHostConfig
from kms_client import station
from kms_client.builders import build_okt
from kms_client.store import KmsStore
from protocol.manufacturing import make_drives
from token_daemon.service import TokenConfig, TokenService

TOKEN_IP = "127.0.9.1"


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def drive_ip(i: int) -> str:
    return f"127.1.{i // 250}.{i % 250 + 1}"


async def run(n: int, workdir: Path, tap: Any = None) -> dict[str, float]:
    kms = KmsStore.create(workdir / "kms", dbkey=os.urandom(32), kms_id=b"\x00\x00\x00\x09")
    made = make_drives(n, first_serial=0x5800_0000_0000_0000)
    for i, m in enumerate(made):
        kms.add_drive(f"d{i}", m.csn, m.pckey, m.model)
    secret = kms.add_token("tok", TOKEN_IP, 7020)
    enrolled, armed = asyncio.Event(), asyncio.Event()
    counts = {"dk": 0, "mk": 0}

    def on_event(csn: bytes, event: object) -> None:
        if isinstance(event, DeviceKeysAccepted):
            counts["dk"] += 1
            if counts["dk"] == n:
                enrolled.set()
        elif isinstance(event, MediaKeysAccepted):
            counts["mk"] += 1
            if counts["mk"] == n:
                armed.set()

    rss0 = rss_bytes()
    host = DriveHost(DriveHostConfig(workdir / "drives"), [(m, drive_ip(i)) for i, m in enumerate(made)], tap=tap)
    await host.start()
    rss1 = rss_bytes()
    host.subscribe(on_event)
    async with TokenService(TokenConfig(TOKEN_IP, workdir / "tok", secret, announce_interval_s=2.0), tap=tap) as token:
        names = [f"d{i}" for i in range(n)]
        t0 = time.perf_counter()
        await station.write_ekt(kms, "tok", names, use_pckey=True, timeout_s=120)
        await asyncio.wait_for(enrolled.wait(), 120)
        t_ekt = time.perf_counter() - t0
        pool = map_pool(kms, names)
        t0 = time.perf_counter()
        build_okt(kms, pool)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        await station.write_okt(kms, "tok", pool, timeout_s=120)
        await asyncio.wait_for(armed.wait(), 120)
        t_okt = time.perf_counter() - t0
        served = token.counters.events["PackageServed"]
    await host.flush()
    await host.stop()
    kms.close()
    return {"drives": n, "okt_build_s": t_build, "ekt_to_enrolled_s": t_ekt, "okt_to_armed_s": t_okt,
            "packages_served": served, "rss_per_drive_kib": (rss1 - rss0) / n / 1024,
            "retries": host.counters.datagrams_out - 2 * n * 2}
