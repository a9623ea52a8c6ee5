"""Status and alerts over a real MQTT broker (mosquitto); the key path does not depend on it."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

import protocol as p
from kms_client import station
from lab.cluster import Lab, LabPlan
from protocol.constants import TOKEN_LAN_PORT, EncryptionLed
from tests.integration.conftest import POOL, enrol_and_arm

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]


class Broker:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto")
        assert exe, "mosquitto is not installed: .ci/run installs it (apt-get install mosquitto)"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                             f"log_dest stderr\nset_tcp_nodelay true\n")
        self.exe, self.proc = exe, None
        self.url = f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
async def mqtt_lab(tmp_path: Path, broker: Broker) -> AsyncIterator[Lab]:
    async with Lab(tmp_path / "lab", LabPlan(announce_interval_s=0.3), mqtt=broker.url) as lab:
        yield lab


async def watch(broker: Broker, seconds: float, subscribed: asyncio.Event | None = None) -> list[dict[str, object]]:
    """``subscribed`` is set once the watcher printed its first message (it has subscribed)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.cli", "kms", "watch", "--mqtt", broker.url, "--json", "--timeout", str(seconds),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    first = await proc.stdout.readline()
    if subscribed is not None:
        subscribed.set()
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in (first + out).decode().splitlines()]


def _states(messages: list[dict[str, object]], kind: str) -> dict[str, dict[str, object]]:
    return {str(m["topic"]): m["payload"] for m in messages  # type: ignore[misc]
            if f"/{kind}/" in str(m["topic"]) and str(m["topic"]).endswith("/state")}


async def test_state_is_retained_and_errors_are_alerts(mqtt_lab: Lab, broker: Broker) -> None:
    await enrol_and_arm(mqtt_lab)
    await asyncio.sleep(1.0)  # coalesced: published within half a second of the last change
    subscribed = asyncio.Event()
    watcher = asyncio.ensure_future(watch(broker, 3.0, subscribed))
    await asyncio.wait_for(subscribed.wait(), 30)  # it has the retained states (its start takes ~2 s when busy)
    await asyncio.sleep(0.2)  # now a drive reports a missing key
    report = p.ErrorReport(mqtt_lab.drive_csns["drive-02"], p.constants.ErrorCode.MISSING_KEY,
                           bytes.fromhex("0a0b0c0d00000063"), 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((mqtt_lab.drive_ips["drive-02"], 0))
        udp.sendto(p.encode(report), (mqtt_lab.token_ips["token-A"], TOKEN_LAN_PORT))
    messages = await watcher
    drives = _states(messages, "drive")
    assert len(drives) == 8 and {d["led"] for d in drives.values()} == {"RED"}
    tokens = _states(messages, "token")
    assert {t["mode"] for t in tokens.values()} >= {"OKT"}
    alerts = [m["payload"] for m in messages if str(m["topic"]).endswith(f"/token/{mqtt_lab.token_ips['token-A']}/event")]
    assert alerts and alerts[0]["error_code"].startswith("00006109")  # type: ignore[index]
    assert alerts[0]["csn"] == mqtt_lab.drive_csns["drive-02"].hex()  # type: ignore[index]
    # coalesced: a pool's arming is not one message per step
    assert mqtt_lab.publisher is not None and mqtt_lab.publisher.published < 100


async def test_the_key_path_works_while_the_broker_is_down(mqtt_lab: Lab, broker: Broker) -> None:
    await enrol_and_arm(mqtt_lab)
    broker.stop()
    mapping = mqtt_lab.kms.apply_mapping(POOL)
    await station.write_okt(mqtt_lab.kms, "token-A", POOL)
    await mqtt_lab.wait_until(lambda s: s.okt_timestamp == mapping.timestamp and s.led is EncryptionLed.RED,
                              "rekeyed without a broker")
    broker.start()  # the broker comes back empty (no persistence): publishing resumes on its own
    drives: dict[str, dict[str, object]] = {}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        drives = _states(await watch(broker, 1.0), "drive")
        if len(drives) == 8:
            break
    assert len(drives) == 8 and {d["okt_timestamp"] for d in drives.values()} == {mapping.timestamp}


def test_watch_says_clearly_when_there_is_no_broker() -> None:
    result = subprocess.run([sys.executable, "-m", "lab.cli", "kms", "watch", "--mqtt", "mqtt://127.0.0.1:1",
                             "--timeout", "1"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1 and "cannot watch the broker" in result.stderr
