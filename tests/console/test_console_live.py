"""The console against live daemons, in chromium: Scenario 1 and its recovery done through the
console with the drive drawn amber then red, and a missing-key alert with its key ID.

The daemons (an in-process lab) publish to a real broker (mosquitto); the console is
``t10k kms serve --mqtt`` as its own process, on the lab's store. The browser runs in a thread
so the lab's event loop keeps serving while it waits.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import AsyncIterator, Callable

import pytest

from kms_client import operators
from lab.cluster import Lab, LabPlan
from protocol.timestamps import format_timestamp
from tests.integration.conftest import POOL
from tests.integration.test_mqtt import Broker

from .browser import Browser
from .console_process import ConsoleProcess
from .consolesite import PASSWORDS, add_operators

pytestmark = pytest.mark.network


@pytest.fixture
def broker(tmp_path: Path) -> object:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def live(tmp_path: Path, broker: Broker) -> AsyncIterator[tuple[Lab, Browser]]:
    async with Lab(tmp_path / "lab", LabPlan(announce_interval_s=0.3), mqtt=broker.url) as lab:
        operators.enable_roles(lab.kms)
        add_operators(lab.kms)
        await lab.arm(POOL)  # every drive enrolled, in pool-1, mapped, OKT written: RED
        console = ConsoleProcess(lab.workdir / "kms", mqtt=broker.url)
        await asyncio.to_thread(console.__enter__)
        try:
            browser = await asyncio.to_thread(Browser, console.url)
            try:
                yield lab, browser
            finally:
                await asyncio.to_thread(browser.close)
        finally:
            await asyncio.to_thread(console.__exit__, None, None, None)


async def run(fn: Callable[..., object], *args: object) -> object:
    return await asyncio.to_thread(fn, *args)


def drawn(name: str, led: str) -> Callable[[Browser], bool]:
    return lambda b: bool(b.finds(f'#library .drive[data-drive="{name}"][data-led="{led}"]'))


async def test_scenario_1_and_its_recovery_through_the_console(live: tuple[Lab, Browser]) -> None:
    lab, b = live
    await run(b.login, "officer", PASSWORDS["officer"])
    await run(b.open, "/library")
    await run(b.wait, lambda b: len(b.finds('#library .drive[data-led="RED"]')) == 8, "eight drives armed (red)")
    await run(b.wait, lambda b: b.finds('#library .token[data-token="token-A"][data-led3="SOLID_GREEN"]'),
              "token-A holding an OKT")
    await run(b.shot, "library")

    lab.kms.new_device_keys(["drive-01"], via_pckey=False)  # Scenario 1: the first EKT never reaches the bay
    await run(b.open, "/tokens/token-A")  # ... and the second is written through the console
    await run(b.click, '#write-device-keys input[value="drive-01"]')
    await run(b.click, "#write-device-keys button")
    await run(b.wait, lambda b: "Write Device Keys to token-A (drive-01)" in b.text("#message"), "the EKT written")

    await run(b.open, "/library")  # the symptom: the token's error LED flashes; drive-01 keeps working
    await run(b.wait, lambda b: b.finds('#library .token[data-token="token-A"][data-error-led="FLASHING_RED"]'),
              "token-A's error LED flashing")
    await run(b.wait, lambda b: "error 0000610A" in b.text("#alert-list") and "drive drive-01" in b.text(
        "#alert-list"), "the alert of the decryption error")
    assert (await run(b.finds, '#library .drive[data-drive="drive-01"][data-led="RED"]'))
    await run(b.open, "/tokens/token-A")
    errors = str(await run(b.text, "#token-errors"))
    assert "drive-01" in errors and "0000610A (KEY_MESSAGE_DECRYPTION)" in errors, errors
    assert await run(b.text, "#error-led") == "FLASHING_RED"
    await run(b.shot, "token")

    await run(b.open, "/library")
    await lab.tokens["token-A"].press_reset()  # 1. the reset button, held 3 s
    await run(b.wait, drawn("drive-01", "FLASHING_GREEN"), "drive-01 reset (flashing green)")
    assert "flashing" in str(await run(b.attr, '#library .drive[data-drive="drive-01"] .enc-led', "class"))

    await run(b.open, "/tokens/token-A")  # 2. Write Device Keys with Use PCKey
    await run(b.click, '#write-device-keys input[value="drive-01"]')
    await run(b.click, "#use-pckey")
    await run(b.click, "#write-device-keys button")
    await run(b.wait, lambda b: b.finds("#message"), "the EKT written")
    await run(b.open, "/library")
    await run(b.wait, drawn("drive-01", "AMBER"), "drive-01 enrolled (amber)")
    await run(b.shot, "library-amber")

    await run(b.login, "user", PASSWORDS["user"])  # 3. Apply, by a User
    await run(b.open, "/mappings")
    await run(b.click, "#mapping-pool-1 form.apply button")
    await run(b.wait, lambda b: "mapping applied, new timestamp" in b.text("#message"), "the mapping applied")
    await run(b.shot, "mappings")
    stamp = format_timestamp(lab.kms.mapping(POOL).timestamp)
    await run(b.open, "/tokens/token-A")  # 4. Write Media Keys
    await run(b.click, "#write-media-keys button")
    await run(b.wait, lambda b: "Write Media Keys of pool-1 to token-A" in b.text("#message"), "the OKT written")
    assert "None." in str(await run(b.text, "#token-errors"))  # the next write clears the error
    await run(b.open, "/library")
    await run(b.wait, drawn("drive-01", "RED"), "drive-01 armed again (red)")
    await run(b.wait, lambda b: stamp in b.text('#library .drive[data-drive="drive-01"] .okt'), "the new OKT time")
    await run(b.open, "/pools/pool-1/verify")
    assert "8 of 8 drive(s) hold it" in str(await run(b.text, "#verify-summary"))
    await run(b.shot, "verify-pool")


async def test_a_missing_key_is_an_alert_and_on_the_tokens_screen(live: tuple[Lab, Browser]) -> None:
    lab, b = live
    await run(b.login, "user", PASSWORDS["user"])
    await run(b.open, "/library")
    await run(b.wait, lambda b: len(b.finds('#library .drive[data-led="RED"]')) == 8, "eight drives armed")
    key_id = bytes.fromhex("0a0b0c0d00000063")
    # A tape needs a key drive-02 lacks: the drive itself reports it (MAC'd under its report key)
    # to the token its media keys came from, as when a host reads such a tape.
    hosted = lab.drives.drives[lab.drive_csns["drive-02"]]
    hosted.apply(hosted.drive.missing_key(key_id, time.time()))
    await run(b.wait, lambda b: "0a0b0c0d00000063" in b.text("#alerts"), "the alert, pushed to the page")
    alert = str(await run(b.text, "#alerts"))
    assert "error 00006109 (MISSING_KEY) from drive drive-02" in alert and "token token-A" in alert, alert
    await run(b.shot, "alert")
    await run(b.open, "/tokens/token-A")
    row = str(await run(b.text, "#token-errors .token-error"))
    assert row.startswith("drive-02 " + lab.drive_csns["drive-02"].hex() + " 00006109 (MISSING_KEY) 0a0b0c0d00000063")


def test_a_killed_daemon_is_drawn_offline_by_its_last_will(tmp_path: Path, broker: Broker) -> None:
    """A token daemon killed with SIGKILL says nothing; the broker publishes its last will, and the
    console draws the token offline instead of its last state."""
    from tests.integration.test_mqtt import WATCH_TOKEN_IP, _token_daemon

    from .consolesite import make_store

    make_store(tmp_path / "kms").close()
    proc = _token_daemon(tmp_path, broker)
    try:
        with ConsoleProcess(tmp_path / "kms", mqtt=broker.url) as console:
            b = Browser(console.url)
            try:
                b.login("KmsAdm", "kmsadm")
                b.type("#new-password", "kmsadm-new-pass")
                b.type("#again-password", "kmsadm-new-pass")
                b.click("#passwd-button")
                b.wait(lambda b: b.path == "/library", "the library")
                token = f'#library .token[data-token="{WATCH_TOKEN_IP}"]'
                b.wait(lambda b: b.attr(token, "data-led3") == "OFF", "the token's state")
                proc.kill()
                proc.wait(10)
                b.wait(lambda b: b.attr(token, "data-led3") == "OFFLINE", "the token offline")
                assert "OFFLINE (connection lost)" in b.text(token)
                b.shot("library-offline")
            finally:
                b.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
