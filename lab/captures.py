"""Reference captures: small scenarios run in a lab with a pcap writer attached.

``captures/regenerate.py`` writes them to captures/; the tests run them too and scan what
they captured for every key the lab used. Each scenario returns those keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Awaitable, Callable

from drive_daemon.cartridge import Cartridge
from drive_daemon.vop import vop_load
from host.errors import MediumError, NotReady
from host.session import open_tape
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
    await lab.enrol()


async def _map_new_key(lab: Lab, key_set: str, keep: list[str]) -> bytes:
    return await lab.map_new_key(POOL, key_set, keep=tuple(keep))


async def _arm(lab: Lab) -> bytes:
    return await lab.arm(POOL)


async def ekt_enrolment(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """First enrolment: an EKT with 'use PCkey' for four drives."""
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _enrol(lab)
        await asyncio.sleep(0.2)
        return lab_secrets(lab)


async def okt_rekey(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """Arm a pool, then rekey it by the seed's Method 1."""
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _arm(lab)
        await _map_new_key(lab, "KS2", ["KS1"])  # the seed's Method 1
        return lab_secrets(lab)


async def missing_key(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """A tape written under a key that leaves the mapping: the missing key error."""
    async with Lab(workdir, _plan(), tap=capture) as lab:
        first_key = await _arm(lab)
        Cartridge.create(lab.library, "VOL001")
        ip = lab.drive_ips["drive-01"]
        await vop_load(ip, "VOL001")  # the operator loads the cartridge
        async with open_tape(ip) as tape:
            await tape.ready()
            await tape.write(b"written under the first key" * 10)
            await tape.write_filemarks(1)
            await tape.unload()  # the host's UNLOAD: the cartridge stays in the drive
        await _map_new_key(lab, "KS2", [])  # the first key leaves the mapping
        async with open_tape(ip) as tape:
            with contextlib.suppress(NotReady):
                await tape.ready()  # a new session: the power-on unit attention, then NOT READY (unloaded)
            await tape.load()  # the host's LOAD threads the cartridge again
            await tape.ready()  # and reports the medium change
            try:
                await tape.read()
            except MediumError as exc:  # 3/2605/6109 to the host, 00006109 to the token
                assert str(exc.sense.seed) == "3/2605/6109" and exc.key_id == first_key, exc
            else:
                raise AssertionError("the drive read a block whose key it does not hold")
            await tape.unload()
        await asyncio.sleep(0.2)
        await station.token_status(lab.kms, "token-A")  # the KMS sees the error
        return lab_secrets(lab)


async def reset(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """The token's reset button held 3 s: every drive it holds CSNs for is cleared."""
    async with Lab(workdir, _plan(), tap=capture) as lab:
        await _arm(lab)
        await lab.tokens["token-A"].press_reset()  # reset button held 3 s: CLEAR_KEYS
        await lab.wait_until(lambda s: s.reset, "reset")
        return lab_secrets(lab)


async def demo(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """The main demo: enrol, arm, rekey, an outdated token refused."""
    secrets: list[bytes] = []
    report = await run_demo(workdir, tap=capture, on_done=lambda lab: secrets.extend(lab_secrets(lab)))
    assert report.ok
    return secrets


# --- the seed's synchronisation scenarios (Chapter 3), each with its recovery -----------

def _two_tokens() -> LabPlan:
    return LabPlan(tokens=(("token-A", "127.0.0.21"), ("token-B", "127.0.0.22")), drive_count=4,
                   announce_interval_s=0.5)


async def _token_error(lab: Lab, token: str, csns: set[bytes]) -> None:
    """Wait until the token holds a key message decryption error (0000610A) from each of these drives."""
    from protocol.constants import ErrorCode

    for _ in range(100):
        status = await station.token_status(lab.kms, token)
        if {e.csn for e in status.errors if e.error_code is ErrorCode.KEY_MESSAGE_DECRYPTION} >= csns:
            assert status.error_led.name == "FLASHING_RED"
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{token} did not report errors from every drive expected")


async def _refresh_okt(lab: Lab, token: str = "token-A", pool: str = POOL) -> None:
    """The seed's recovery step: Apply (a new timestamp) and write the OKT."""
    mapping = lab.kms.apply_mapping(pool)
    await station.write_okt(lab.kms, token, pool)
    names = [d.name for d in lab.kms.pool_drives(pool)]
    await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp, "armed",
                         names=names)


async def _reset_and_reenrol(lab: Lab, names: list[str]) -> None:
    """Reset the drives (VOP Reset Drive), then an EKT with 'Use PCkey'."""
    from drive_daemon.vop import vop_reset

    for n in names:
        await vop_reset(lab.drive_ips[n])
    await lab.wait_until(lambda s: s.reset and s.status_fields[0] == "==RESET==", "reset", names=names)
    await station.write_ekt(lab.kms, "token-A", names, use_pckey=True)
    await lab.wait_until(lambda s: s.led is EncryptionLed.AMBER, "enabled", names=names)


async def scenario_1(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """Write Device Keys twice before delivering the first: the token's error LED flashes."""
    async with Lab(workdir, _two_tokens(), tap=capture) as lab:
        await _arm(lab)
        target = ["drive-01"]
        lab.kms.new_device_keys(target, via_pckey=False)  # the first EKT, never delivered
        await station.write_ekt(lab.kms, "token-A", target, use_pckey=False)  # the second
        await _token_error(lab, "token-A", {lab.drive_csns["drive-01"]})
        await lab.tokens["token-A"].press_reset()  # recovery: reset the target drive from the token
        await lab.wait_until(lambda s: s.reset, "reset", names=target)
        await station.write_ekt(lab.kms, "token-A", target, use_pckey=True)
        await lab.wait_until(lambda s: s.led is EncryptionLed.AMBER, "enabled", names=target)
        await _refresh_okt(lab)
        return lab_secrets(lab)


async def scenario_2(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """New device keys written but not delivered, then an OKT made with them: every drive errs."""
    async with Lab(workdir, _two_tokens(), tap=capture) as lab:
        await _arm(lab)
        lab.kms.new_device_keys(lab.drive_names, via_pckey=False)  # the EKT that never reached the bay
        lab.kms.apply_mapping(POOL)
        await station.write_okt(lab.kms, "token-A", POOL)
        await _token_error(lab, "token-A", set(lab.drive_csns.values()))
        await _reset_and_reenrol(lab, lab.drive_names)
        await _refresh_okt(lab)
        return lab_secrets(lab)


async def scenario_3(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """The Nth drive is off while the EKT is delivered; the OKT that follows is refused by it."""
    async with Lab(workdir, _two_tokens(), tap=capture) as lab:
        await _arm(lab)
        nth = lab.drives.drives[lab.drive_csns["drive-04"]]
        await nth.stop()  # powered off
        nth.power_cycle()
        others = lab.drive_names[:3]
        await station.write_ekt(lab.kms, "token-A", lab.drive_names, use_pckey=False)
        await lab.wait_until(lambda s: s.holding_keys, "holding new device keys", names=others)
        mapping = lab.kms.apply_mapping(POOL)
        await station.write_okt(lab.kms, "token-A", POOL)  # overwrites the EKT
        await lab.wait_until(lambda s: s.okt_timestamp == mapping.timestamp, "armed", names=others)
        await nth.start()  # power returns
        await _token_error(lab, "token-A", {lab.drive_csns["drive-04"]})
        await _reset_and_reenrol(lab, ["drive-04"])
        await _refresh_okt(lab)
        return lab_secrets(lab)


async def scenario_4(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """An old drive included in an EKT with 'Reset drive' (PCkey): it cannot decrypt it."""
    async with Lab(workdir, _two_tokens(), tap=capture) as lab:
        await _arm(lab)
        await station.write_ekt(lab.kms, "token-A", ["drive-04"], use_pckey=True)
        await _token_error(lab, "token-A", {lab.drive_csns["drive-04"]})
        await _reset_and_reenrol(lab, ["drive-04"])
        await _refresh_okt(lab)
        assert (await station.token_status(lab.kms, "token-A")).errors == ()  # the next write cleared the error
        return lab_secrets(lab)


async def scenario_5(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """An OKT older than freshly delivered device keys: Holding Keys until Apply and a new OKT."""
    async with Lab(workdir, _two_tokens(), tap=capture) as lab:
        await _arm(lab)
        await station.write_ekt(lab.kms, "token-A", lab.drive_names, use_pckey=False)
        await lab.wait_until(lambda s: s.holding_keys and s.status_fields[1] == "Holding Keys", "holding")
        await station.write_okt(lab.kms, "token-A", POOL)  # no Apply: the old timestamp
        await asyncio.sleep(0.3)
        assert all(s.holding_keys for s in (await lab.vop_all()).values())
        await _refresh_okt(lab)
        return lab_secrets(lab)


async def scenario_6(workdir: Path, capture: CaptureWriter) -> list[bytes]:
    """A drive moved to a pool whose mapping is older than the one it holds refuses its OKT."""
    async with Lab(workdir, _two_tokens(), tap=capture) as lab:
        await _enrol(lab)
        kms = lab.kms
        kms.create_pool("old-pool")
        old_key = kms.create_key()
        kms.create_key_set("KS-old")
        kms.add_key_to_set("KS-old", old_key)
        kms.set_mapping("old-pool", ["KS-old"], old_key)  # mapped first: the older timestamp
        kms.create_pool(POOL)
        for n in lab.drive_names:
            kms.add_drive_to_pool(POOL, n)
        await _map_new_key(lab, "KS1", [])
        held = (await lab.vop("drive-04")).okt_timestamp
        kms.add_drive_to_pool("old-pool", "drive-04")  # moved
        await station.write_okt(kms, "token-B", "old-pool")
        await asyncio.sleep(0.3)
        assert (await lab.vop("drive-04")).okt_timestamp == held  # refused, silently
        await _refresh_okt(lab, token="token-B", pool="old-pool")
        return lab_secrets(lab)


SCENARIOS: dict[str, Scenario] = {
    "demo": demo,
    "ekt-enrolment": ekt_enrolment,
    "okt-rekey": okt_rekey,
    "missing-key": missing_key,
    "reset": reset,
    "scenario-1": scenario_1,
    "scenario-2": scenario_2,
    "scenario-3": scenario_3,
    "scenario-4": scenario_4,
    "scenario-5": scenario_5,
    "scenario-6": scenario_6,
}


def capture_all(out_dir: Path, names: list[str] | None = None) -> dict[str, list[bytes]]:
    """Run every scenario (or those named); returns, per capture name, the keys its lab used."""
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets = {}
    for name, scenario in SCENARIOS.items():
        if names is not None and name not in names:
            continue
        with tempfile.TemporaryDirectory(prefix=f"t10k-{name}-") as work, \
                CaptureWriter(out_dir / f"{name}.pcap") as capture:
            secrets[name] = asyncio.run(scenario(Path(work) / "lab", capture))
    return secrets
