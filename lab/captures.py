"""Reference captures: small scenarios run in a lab with a pcap writer attached.

``captures/regenerate.py`` writes them to captures/; the tests run them too and scan what
they captured for every key the lab used. Each scenario returns those keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Awaitable, Protocol

from drive_daemon.cartridge import Cartridge
from drive_daemon.credential import read_credential_file
from drive_daemon.service import Tap
from drive_daemon.vop import vop_load
from host.errors import MediumError, NotReady
from host.session import open_tape
from kms_client import station
from protocol import TokenStatus
from protocol.constants import EncryptionLed, ErrorCode, TokenLed
from protocol.pcap import CaptureWriter
from protocol.timestamps import format_timestamp

from .addresses import LabNet
from .cluster import Lab, LabPlan
from .demo import run_demo
from .narration import RECOVERY, SETUP, SYMPTOM, Say, looks, quiet
from .narration import names as _names

POOL = "pool-1"


class Scenario(Protocol):
    __name__: str
    __doc__: str | None

    def __call__(self, workdir: Path, capture: Tap | None, *, net: LabNet | None = None,
                 say: Say = quiet) -> Awaitable[list[bytes]]: ...


def lab_secrets(lab: Lab) -> list[bytes]:
    """Every key the lab's KMS holds: media, device, PCkeys, token secrets, its signing key."""
    kms = lab.kms
    secrets = [kms.key_value(k) for k in kms.key_ids()]
    secrets += [k for n in lab.drive_names for _, k in kms.device_keys(n, 10)]
    secrets += [kms.pckey(n) for n in lab.drive_names] + [kms.token_secret(t) for t in lab.token_names]
    secrets.append(read_credential_file(lab.credential_file))  # the drive host's service credential
    return secrets + [kms.kms_signing_key()]


def _lab(workdir: Path, capture: Tap | None, net: LabNet | None, tokens: int = 1) -> Lab:
    names = ("token-A", "token-B")[:tokens]
    return Lab(workdir, LabPlan(token_names=names, drive_count=4, net=net, announce_interval_s=0.5), tap=capture)


async def _arm(lab: Lab, say: Say) -> bytes:
    key = await lab.arm(POOL)
    say(SETUP, f"{len(lab.drive_names)} drives enrolled (EKT, use PCkey) and armed from {lab.token_names[0]}: "
               f"{POOL} mapped to key set KS1, every LED RED")
    return key


async def ekt_enrolment(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                        ) -> list[bytes]:
    """First enrolment: an EKT with 'use PCkey' for four drives."""
    async with _lab(workdir, capture, net) as lab:
        await lab.enrol()
        s = await lab.vop("drive-01")
        say(SYMPTOM, f"every drive pulled its device keys (EKT, use PCkey): {looks(s)}")
        await asyncio.sleep(0.2)
        return lab_secrets(lab)


async def okt_rekey(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet) -> list[bytes]:
    """Arm a pool, then rekey it by the seed's Method 1."""
    async with _lab(workdir, capture, net) as lab:
        await _arm(lab, say)
        key = await lab.map_new_key(POOL, "KS2", keep=("KS1",))  # the seed's Method 1
        s = await lab.vop("drive-01")
        say(SYMPTOM, f"every drive took the new mapping: write key {key.hex()}, {s.media_key_count} media keys, "
                     f"{looks(s)}")
        return lab_secrets(lab)


async def missing_key(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                      ) -> list[bytes]:
    """A tape written under a key that leaves the mapping: the missing key error."""
    async with _lab(workdir, capture, net) as lab:
        first = await _arm(lab, say)
        Cartridge.create(lab.library, "VOL001")
        ip = lab.drive_ips["drive-01"]
        await vop_load(ip, "VOL001")  # the operator loads the cartridge
        async with open_tape(ip) as tape:
            await tape.ready()
            await tape.write(b"written under the first key" * 10)
            await tape.write_filemarks(1)
            await tape.unload()  # the host's UNLOAD: the cartridge stays in the drive
        say(SETUP, f"VOL001 written on drive-01 under key {first.hex()} (iSCSI, WRITE(6))")
        second = await lab.map_new_key(POOL, "KS2")  # the first key leaves the mapping
        say(SETUP, f"{POOL} remapped to KS2 only: key {first.hex()} left the mapping")
        async with open_tape(ip) as tape:
            with contextlib.suppress(NotReady):
                await tape.ready()  # a new session: the power-on unit attention, then NOT READY (unloaded)
            await tape.load()  # the host's LOAD threads the cartridge again
            await tape.ready()  # and reports the medium change
            try:
                await tape.read()
            except MediumError as exc:  # 3/2605/6109 to the host, 00006109 to the token
                sense = exc
            else:
                raise AssertionError("drive-01 read VOL001 without its key")
            await tape.unload()
        assert str(sense.sense.seed) == "3/2605/6109" and sense.key_id == first, sense
        say(SYMPTOM, f"host: CHECK CONDITION reading VOL001 on drive-01, sense {sense.sense.seed}, "
                     f"key ID {sense.key_id.hex()}")
        status = await _token_errors(lab, "token-A", {lab.drive_csns["drive-01"]}, ErrorCode.MISSING_KEY)
        say(SYMPTOM, f"token-A: error LED {status.error_led.name}, error 00006109 (missing key) from drive-01, "
                     f"key ID {first.hex()}")
        mapping = lab.kms.set_mapping(POOL, ["KS1", "KS2"], second)
        await station.write_okt(lab.kms, "token-A", POOL)
        await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp, "armed")
        say(RECOVERY, f"1. mapping extended with KS1 (key {first.hex()}) beside KS2")
        errors = (await station.token_status(lab.kms, "token-A")).errors
        say(RECOVERY, f"2. OKT written to token-A: every drive RED, {len(errors)} error(s) left on the token")
        async with open_tape(ip) as tape:
            with contextlib.suppress(NotReady):
                await tape.ready()
            await tape.load()
            await tape.ready()
            data = await tape.read()
            await tape.unload()
        say(RECOVERY, f"3. VOL001 unloaded and loaded again: read on drive-01 ({len(data)} octets)")
        return lab_secrets(lab)


async def reset(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet) -> list[bytes]:
    """The token's reset button held 3 s: every drive it holds CSNs for is cleared."""
    async with _lab(workdir, capture, net) as lab:
        await _arm(lab, say)
        await lab.tokens["token-A"].press_reset()  # reset button held 3 s: CLEAR_KEYS
        statuses = await lab.wait_until(lambda s: s.reset, "reset")
        say(SYMPTOM, f"reset button held 3 s on token-A: all {len(statuses)} drives {looks(statuses['drive-01'])}, "
                     f"{statuses['drive-01'].media_key_count} media keys")
        return lab_secrets(lab)


async def demo(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet) -> list[bytes]:
    """The main demo: enrol, arm, rekey, an outdated token refused."""
    secrets: list[bytes] = []
    report = await run_demo(workdir, tap=capture, net=net, on_done=lambda lab: secrets.extend(lab_secrets(lab)),
                            progress=lambda step: say(SYMPTOM if step.title.startswith("4.") else SETUP, step.title))
    assert report.ok
    return secrets


# --- the seed's synchronisation scenarios (Chapter 3), each with its recovery -----------

async def _token_errors(lab: Lab, token: str, csns: set[bytes],
                        code: ErrorCode = ErrorCode.KEY_MESSAGE_DECRYPTION) -> TokenStatus:
    """Wait until the token holds this error from each of these drives, its error LED flashing."""
    for _ in range(100):
        status = await station.token_status(lab.kms, token)
        if {e.csn for e in status.errors if e.error_code is code} >= csns:
            if status.error_led is not TokenLed.FLASHING_RED:
                raise AssertionError(f"{token} holds errors but its error LED is {status.error_led.name}")
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{token} did not report error {int(code):08X} from every drive expected")


async def _decryption_errors(lab: Lab, token: str, names: list[str], say: Say) -> None:
    status = await _token_errors(lab, token, {lab.drive_csns[n] for n in names})
    say(SYMPTOM, f"{token}: token error LED {status.error_led.name.lower().replace('_', ' ')}, "
                 f"error 0000610A (key message decryption error) from {_names(names)}")


async def _refresh_okt(lab: Lab, say: Say, token: str = "token-A", pool: str = POOL, step: str = "3-4") -> None:
    """The seed's recovery step: Apply (a new timestamp) and write the OKT."""
    mapping = lab.kms.apply_mapping(pool)
    await station.write_okt(lab.kms, token, pool)
    names = [d.name for d in lab.kms.pool_drives(pool)]
    statuses = await lab.wait_until(lambda s: s.led is EncryptionLed.RED and s.okt_timestamp == mapping.timestamp,
                                    "armed", names=names)
    say(RECOVERY, f"{step}. Apply on {pool} (new timestamp {format_timestamp(mapping.timestamp)}), OKT written to "
                  f"{token}: {_names(names)} {looks(statuses[names[0]])}")


async def _reset_and_reenrol(lab: Lab, names: list[str], say: Say) -> None:
    """Reset the drives (VOP Reset Drive), then an EKT with 'Use PCkey'."""
    for n in names:
        await lab.vop_reset(n)
    statuses = await lab.wait_until(lambda s: s.reset and s.status_fields[0] == "==RESET==", "reset", names=names)
    say(RECOVERY, f"1. VOP Reset Drive on {_names(names)}: {looks(statuses[names[0]])}")
    await _reenrol(lab, names, say)


async def _reenrol(lab: Lab, names: list[str], say: Say) -> None:
    await station.write_ekt(lab.kms, "token-A", names, use_pckey=True)
    statuses = await lab.wait_until(lambda s: s.led is EncryptionLed.AMBER, "enabled", names=names)
    say(RECOVERY, f"2. EKT (use PCkey) for {_names(names)} written to token-A: {looks(statuses[names[0]])}")


async def scenario_1(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                     ) -> list[bytes]:
    """Write Device Keys twice before delivering the first: the token's error LED flashes."""
    async with _lab(workdir, capture, net, tokens=2) as lab:
        await _arm(lab, say)
        target = ["drive-01"]
        lab.kms.new_device_keys(target, via_pckey=False)  # the first EKT, never delivered
        await station.write_ekt(lab.kms, "token-A", target, use_pckey=False)  # the second
        say(SETUP, "device keys for drive-01 written twice; the first EKT never reached the bay")
        await _decryption_errors(lab, "token-A", target, say)
        s = await lab.vop("drive-01")
        if s.led is not EncryptionLed.RED:
            raise AssertionError(f"drive-01 should keep working (RED), shows {looks(s)}")
        say(SYMPTOM, f"drive-01 keeps working with what it has: {looks(s)}")
        await lab.tokens["token-A"].press_reset()  # recovery: reset the target drive from the token
        statuses = await lab.wait_until(lambda s: s.reset, "reset", names=target)
        say(RECOVERY, f"1. reset button held 3 s on token-A: drive-01 {looks(statuses['drive-01'])}")
        await _reenrol(lab, target, say)
        await _refresh_okt(lab, say)
        return lab_secrets(lab)


async def scenario_2(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                     ) -> list[bytes]:
    """New device keys written but not delivered, then an OKT made with them: every drive errs."""
    async with _lab(workdir, capture, net, tokens=2) as lab:
        await _arm(lab, say)
        lab.kms.new_device_keys(lab.drive_names, via_pckey=False)  # the EKT that never reached the bay
        lab.kms.apply_mapping(POOL)
        await station.write_okt(lab.kms, "token-A", POOL)
        say(SETUP, "new device keys recorded for every drive but never delivered; an OKT made with them written")
        await _decryption_errors(lab, "token-A", lab.drive_names, say)
        await _reset_and_reenrol(lab, lab.drive_names, say)
        await _refresh_okt(lab, say)
        return lab_secrets(lab)


async def scenario_3(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                     ) -> list[bytes]:
    """The Nth drive is off while the EKT is delivered; the OKT that follows is refused by it."""
    async with _lab(workdir, capture, net, tokens=2) as lab:
        await _arm(lab, say)
        nth = lab.drives.drives[lab.drive_csns["drive-04"]]
        await nth.stop()  # powered off
        nth.power_cycle()
        others = lab.drive_names[:3]
        say(SETUP, "drive-04 powered off; an EKT with new device keys written for all four drives")
        await station.write_ekt(lab.kms, "token-A", lab.drive_names, use_pckey=False)
        statuses = await lab.wait_until(lambda s: s.holding_keys, "holding new device keys", names=others)
        say(SYMPTOM, f"{_names(others)}: {looks(statuses[others[0]])}")
        mapping = lab.kms.apply_mapping(POOL)
        await station.write_okt(lab.kms, "token-A", POOL)  # overwrites the EKT
        statuses = await lab.wait_until(lambda s: s.okt_timestamp == mapping.timestamp, "armed", names=others)
        say(SYMPTOM, f"the OKT overwrote the EKT: {_names(others)} {looks(statuses[others[0]])}")
        await nth.start()  # power returns
        say(SETUP, "drive-04 powered on")
        await _decryption_errors(lab, "token-A", ["drive-04"], say)
        await _reset_and_reenrol(lab, ["drive-04"], say)
        await _refresh_okt(lab, say)
        return lab_secrets(lab)


async def scenario_4(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                     ) -> list[bytes]:
    """An old drive included in an EKT with 'Reset drive' (PCkey): it cannot decrypt it."""
    async with _lab(workdir, capture, net, tokens=2) as lab:
        await _arm(lab, say)
        await station.write_ekt(lab.kms, "token-A", ["drive-04"], use_pckey=True)
        say(SETUP, "drive-04, already enrolled, included in an EKT with 'use PCkey' (reset drive)")
        await _decryption_errors(lab, "token-A", ["drive-04"], say)
        s = await lab.vop("drive-04")
        say(SYMPTOM, f"drive-04 keeps its keys: {looks(s)}, {s.media_key_count} media key(s)")
        await _reset_and_reenrol(lab, ["drive-04"], say)
        await _refresh_okt(lab, say)
        errors = (await station.token_status(lab.kms, "token-A")).errors
        if errors != ():
            raise AssertionError(f"token-A still holds {len(errors)} error(s) after its next write")
        say(RECOVERY, "token-A's next write cleared its error: no error held, error LED off")
        return lab_secrets(lab)


async def scenario_5(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                     ) -> list[bytes]:
    """An OKT older than freshly delivered device keys: Holding Keys until Apply and a new OKT."""
    async with _lab(workdir, capture, net, tokens=2) as lab:
        await _arm(lab, say)
        await station.write_ekt(lab.kms, "token-A", lab.drive_names, use_pckey=False)
        statuses = await lab.wait_until(lambda s: s.holding_keys and s.status_fields[1] == "Holding Keys", "holding")
        say(SETUP, "new device keys delivered (EKT) to every drive")
        say(SYMPTOM, f"every drive: VOP Holding Keys, encryption LED {statuses['drive-01'].led.name} "
                     f"({looks(statuses['drive-01'])})")
        await station.write_okt(lab.kms, "token-A", POOL)  # no Apply: the old timestamp
        await asyncio.sleep(0.3)
        after = await lab.vop_all()
        if not all(s.holding_keys for s in after.values()):
            raise AssertionError("a drive took an OKT older than its device keys")
        say(SYMPTOM, f"an OKT written without Apply (old timestamp) is refused silently: still {looks(after['drive-01'])}")
        await _refresh_okt(lab, say)
        return lab_secrets(lab)


async def scenario_6(workdir: Path, capture: Tap | None, *, net: LabNet | None = None, say: Say = quiet
                     ) -> list[bytes]:
    """A drive moved to a pool whose mapping is older than the one it holds refuses its OKT."""
    async with _lab(workdir, capture, net, tokens=2) as lab:
        await lab.enrol()
        kms = lab.kms
        kms.create_pool("old-pool")
        old_key = kms.create_key()
        kms.create_key_set("KS-old")
        kms.add_key_to_set("KS-old", old_key)
        kms.set_mapping("old-pool", ["KS-old"], old_key)  # mapped first: the older timestamp
        kms.create_pool(POOL)
        for n in lab.drive_names:
            kms.add_drive_to_pool(POOL, n)
        await lab.map_new_key(POOL, "KS1")
        held = (await lab.vop("drive-04")).okt_timestamp
        say(SETUP, f"old-pool mapped first; {POOL} mapped later and armed (drive-04 holds "
                   f"{format_timestamp(held)})")
        kms.add_drive_to_pool("old-pool", "drive-04")  # moved
        await station.write_okt(kms, "token-B", "old-pool")
        say(SETUP, "drive-04 moved to old-pool; its OKT written to token-B")
        await asyncio.sleep(0.3)
        s = await lab.vop("drive-04")
        if s.okt_timestamp != held:
            raise AssertionError("drive-04 took an OKT older than the mapping it holds")
        say(SYMPTOM, f"drive-04 refuses old-pool's OKT silently: its OKT timestamp stays {format_timestamp(held)}, "
                     f"{looks(s)}")
        await _refresh_okt(lab, say, token="token-B", pool="old-pool")
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


def capture_all(out_dir: Path, names: list[str] | None = None, *, net: LabNet | None = None,
                said: dict[str, list[tuple[str, str]]] | None = None) -> dict[str, list[bytes]]:
    """Run every scenario (or those named); returns, per capture name, the keys its lab used.

    ``net`` None: each on free addresses; the reference captures give the fixed DEFAULT_NET.
    ``said`` (if given) receives, per name, what the scenario said: (phase, text)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    secrets = {}
    for name, scenario in SCENARIOS.items():
        if names is not None and name not in names:
            continue
        lines = said.setdefault(name, []) if said is not None else []
        with tempfile.TemporaryDirectory(prefix=f"t10k-{name}-") as work, \
                CaptureWriter(out_dir / f"{name}.pcap") as capture:
            secrets[name] = asyncio.run(scenario(Path(work) / "lab", capture, net=net,
                                                 say=lambda phase, text, lines=lines: lines.append((phase, text))))
    return secrets
