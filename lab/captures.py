"""Reference captures: small scenarios run in a lab with a pcap writer attached.

``captures/regenerate.py`` writes them to captures/; the tests run them too and scan what
they captured for every key the lab used. Each scenario returns those keys.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

from drive_daemon.cartridge import Cartridge
from drive_daemon.host_client import CheckCondition, HostClient
from kms_client import station
from protocol.constants import EncryptionLed
from protocol.pcap import CaptureWriter

from .cluster import Lab, LabPlan
from .demo import run_demo

POOL = "pool-1"
Scenario = Callable[[Path, CaptureWriter], Awaitable[list[bytes]]]


def lab_secrets(lab: Lab) -> list[bytes]:
    """Every key the lab's KMS holds: media, device, PCkeys, token secrets."""
    kms = lab.kms
    secrets = [kms.key_value(k) for k in kms.key_ids()]
    secrets += [k for n in lab.drive_names for _, k in kms.device_keys(n, 10)]
    secrets += [kms.pckey(n) for n in lab.drive_names] + [kms.token_secret(t) for t, _ in lab.plan.tokens]
    return secrets


def _plan() -> LabPlan:
    return LabPlan(tokens=(("token-A", "127.0.0.21"),), drive_count=4, announce_interval_s=0.5)


async def _enrol(lab: Lab) -> None:
    await station.write_ekt(lab.kms, "token-A", lab.drive_names, use_pckey=True)
    await lab.wait_until(lambda s: s.led is EncryptionLed.AMBER, "amber")


async def _map_new_key(lab: Lab, key_set: str, keep: list[str]) -> bytes:
    kms = lab.kms
    key = kms.create_key()
    kms.create_key_set(key_set)
    kms.add_key_to_set(key_set, key)
    mapping = kms.set_mapping(POOL, keep + [key_set], key)
    await station.write_okt(kms, "token-A", POOL)
    await lab.wait_until(lambda s: s.okt_timestamp == mapping.timestamp and s.led is EncryptionLed.RED, "armed")
    return key


async def _arm(lab: Lab) -> bytes:
    await _enrol(lab)
    lab.kms.create_pool(POOL)
    for n in lab.drive_names:
        lab.kms.add_drive_to_pool(POOL, n)
    return await _map_new_key(lab, "KS1", [])


async def ekt_enrolment(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _enrol(lab)
        await asyncio.sleep(0.2)
        return lab_secrets(lab)


async def okt_rekey(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _arm(lab)
        await _map_new_key(lab, "KS2", ["KS1"])  # the seed's Method 1
        return lab_secrets(lab)


async def missing_key(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _arm(lab)
        Cartridge.create(lab.library, "VOL001")
        ip = lab.drive_ips["drive-01"]
        async with HostClient(ip) as host:
            await host.load("VOL001")
            await host.write(b"written under the first key" * 10)
            await host.write_filemarks(1)
            await host.unload()
        await _map_new_key(lab, "KS2", [])  # the first key leaves the mapping
        async with HostClient(ip) as host:
            await host.load("VOL001")
            try:
                await host.read()
            except CheckCondition:
                pass  # 3/2605/6109 to the host, 00006109 to the token
            await host.unload()
        await asyncio.sleep(0.2)
        await station.token_status(lab.kms, "token-A")  # the KMS sees the error
        return lab_secrets(lab)


async def reset(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _arm(lab)
        await lab.tokens["token-A"].press_reset()  # reset button held 3 s: CLEAR_KEYS
        await lab.wait_until(lambda s: s.reset, "reset")
        return lab_secrets(lab)


async def demo(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    secrets: list[bytes] = []
    report = await run_demo(workdir, tap=capture, on_done=lambda lab: secrets.extend(lab_secrets(lab)))
    assert report.ok
    return secrets


SCENARIOS: dict[str, Scenario] = {
    "demo": demo,
    "ekt-enrolment": ekt_enrolment,
    "okt-rekey": okt_rekey,
    "missing-key": missing_key,
    "reset": reset,
}


def capture_all(out_dir: Path) -> dict[str, list[bytes]]:
    """Run every scenario; returns, per capture name, the keys its lab used."""
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets = {}
    for name, scenario in SCENARIOS.items():
        with tempfile.TemporaryDirectory(prefix=f"t10k-{name}-") as work, \
                CaptureWriter(out_dir / f"{name}.pcap") as capture:
            secrets[name] = asyncio.run(scenario(Path(work) / "lab", capture))
    return secrets
