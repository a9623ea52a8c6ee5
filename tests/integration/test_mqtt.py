"""Status and alerts over a real MQTT broker (mosquitto); the key path does not depend on it."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import AsyncIterator, Iterator

import pytest

import protocol as p
from kms_client import station
from lab.addresses import free_net
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
    """``kms watch --json`` for ``seconds`` once subscribed (it says so on stderr; then ``subscribed`` is set)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lab.cli", "kms", "watch", "--mqtt", broker.url, "--json", "--timeout", str(seconds),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stderr is not None
    first = await proc.stderr.readline()
    assert first.startswith(b"watching"), first
    if subscribed is not None:
        subscribed.set()
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return [json.loads(line) for line in out.decode().splitlines()]  # 'watching' was on stderr


def _states(messages: list[dict[str, object]], kind: str) -> dict[str, dict[str, object]]:
    return {str(m["topic"]): m["payload"] for m in messages  # type: ignore[misc]
            if f"/{kind}/" in str(m["topic"]) and str(m["topic"]).endswith("/state")}


async def test_state_is_retained_and_errors_are_alerts(mqtt_lab: Lab, broker: Broker) -> None:
    await enrol_and_arm(mqtt_lab)
    await asyncio.sleep(1.0)  # coalesced: published within half a second of the last change
    subscribed = asyncio.Event()
    watcher = asyncio.ensure_future(watch(broker, 3.0, subscribed))
    await asyncio.wait_for(subscribed.wait(), 30)
    await asyncio.sleep(0.5)  # it has the retained states; now a drive reports a missing key
    report = p.reportauth.signed_report(mqtt_lab.kms.pckey("drive-02"), mqtt_lab.drive_csns["drive-02"],
                                        p.constants.ErrorCode.MISSING_KEY, bytes.fromhex("0a0b0c0d00000063"),
                                        mqtt_lab.tokens["token-A"].token.memory.timestamp)
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


# --- availability: the MQTT last will, and what watch makes of it -------------------------

NET = free_net()  # beside any lab, the README's daemons included
WATCH_TOKEN_IP = NET.token_ip(0)


def _watch_text(broker: Broker, seconds: float, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", "kms", "watch", "--mqtt", broker.url, "--timeout",
                           str(seconds), *extra], cwd=ROOT, capture_output=True, text=True, timeout=60)


def _token_daemon(tmp_path: Path, broker: Broker) -> subprocess.Popen[str]:
    secret = tmp_path / "tok.secret"
    secret.write_text(os.urandom(32).hex() + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "token", "run", "--ip", WATCH_TOKEN_IP, "--state",
                             str(tmp_path / "tok"), "--secret-file", str(secret), "--mqtt", broker.url,
                             "--site", "tokyo", "--json", "--drive-lan-port", str(NET.lan_port)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = json.loads(proc.stdout.readline())
    assert ready["status"] == "serving" and ready["token"] == WATCH_TOKEN_IP
    return proc


def _wait_for_line(broker: Broker, needle: str, what: str) -> list[str]:
    deadline = time.monotonic() + 15
    while True:
        lines = _watch_text(broker, 1.0).stdout.splitlines()
        if any(needle in line for line in lines):
            return lines
        assert time.monotonic() < deadline, f"{what}: {lines}"


def test_a_daemon_killed_shows_offline_in_watch(tmp_path: Path, broker: Broker) -> None:
    proc = _token_daemon(tmp_path, broker)
    try:
        lines = _wait_for_line(broker, f"token {WATCH_TOKEN_IP}:", "the token's state is published")
        assert any(f"tokyo daemon token-{WATCH_TOKEN_IP} online" in line for line in lines), lines
        assert any("no errors" in line for line in lines) and not any("item(s)" in line for line in lines)
    finally:
        proc.kill()  # SIGKILL: no goodbye; the broker publishes the daemon's last will
        proc.wait(10)
    lines = _wait_for_line(broker, "OFFLINE", "the last will is published")
    offline = [line for line in lines if "OFFLINE" in line]
    assert any(f"tokyo daemon token-{WATCH_TOKEN_IP} OFFLINE (connection lost)" in line for line in offline), lines
    # the retained state of the dead daemon's token is marked, in whatever order the broker sends them
    state = [line for line in lines if f"token {WATCH_TOKEN_IP}:" in line and "LED3" in line]
    assert state, lines
    assert state[0].endswith("[daemon offline]") or any(line.endswith(f": token {WATCH_TOKEN_IP}")
                                                        for line in offline), lines
    for line in lines:  # every line starts with the time the daemon published it (a will: none is known)
        assert (line[:4].isdigit() and line[10] == " " and line[19] == "Z") or line.startswith("(earlier)"), line
    as_json = [json.loads(line) for line in _watch_text(broker, 1.0, "--json").stdout.splitlines()]
    availability = [m for m in as_json if m["topic"] == f"t10k/tokyo/daemon/token-{WATCH_TOKEN_IP}/availability"]
    assert availability and availability[0]["payload"]["online"] is False and availability[0]["offline"] is True
    assert availability[0]["retained"] is True


def test_a_daemon_stopped_says_so(tmp_path: Path, broker: Broker) -> None:
    proc = _token_daemon(tmp_path, broker)
    _wait_for_line(broker, f"daemon token-{WATCH_TOKEN_IP} online", "online")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    assert json.loads(out.splitlines()[-1])["status"] == "stopped"
    _wait_for_line(broker, f"daemon token-{WATCH_TOKEN_IP} OFFLINE (stopped)", "a stop is not a crash")


async def test_watch_shows_each_state_once(mqtt_lab: Lab, broker: Broker) -> None:
    await enrol_and_arm(mqtt_lab)
    await asyncio.sleep(1.0)
    first = _watch_text(broker, 1.5)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    states = [line for line in lines if " drive " in line and "LED" in line]
    assert len(states) == 8 and len({line.split(" ", 3)[3] for line in states}) == 8, lines
    # a mapping applied again without change publishes nothing new for the drives that hold it already
    published = mqtt_lab.publisher.published if mqtt_lab.publisher else 0
    for hosted in mqtt_lab.host.drives.values():  # type: ignore[union-attr]
        hosted.publish([])  # the daemon marks every state dirty: same states
    await asyncio.sleep(1.0)
    assert mqtt_lab.publisher is not None and mqtt_lab.publisher.published == published


async def test_a_change_while_its_state_is_being_published_still_goes_out(broker: Broker) -> None:
    """A drive that changes between its state's snapshot and the broker's answer must not
    stay shown in the old state (the console's live library once did, until its next change)."""
    import aiomqtt

    from events import EventPublisher

    topic = "t10k/race/drive/0001/state"
    publisher = EventPublisher(broker.url, coalesce_s=0.05, site="race", daemon="race")
    led = {"value": "FLASHING_GREEN"}

    def source() -> dict[str, object]:
        body = dict(led)
        if led["value"] == "FLASHING_GREEN":  # the drive moves on right after this snapshot
            led["value"] = "RED"
            publisher.state(topic, source)
        return body

    seen: list[str] = []
    async with aiomqtt.Client("127.0.0.1", broker.port) as client:
        await client.subscribe(topic, qos=1)
        async with publisher:
            publisher.state(topic, source)
            try:
                async with asyncio.timeout(10):
                    async for message in client.messages:
                        seen.append(json.loads(bytes(message.payload))["value"])  # type: ignore[arg-type]
                        if seen[-1] == "RED":
                            break
            except TimeoutError:
                pass
    assert seen == ["FLASHING_GREEN", "RED"], seen
