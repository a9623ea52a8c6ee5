"""A drive acknowledges only what is durable: its replies wait for the NVRAM write (issue 13, finding 4).

The asyncio shell owns persistence, so these tests inject a slow or failing writer below it
and watch what the shell hands its transport (no sockets: a recording stand-in).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import pytest

from drive_daemon.drive import Output
from drive_daemon.nvram import nvram_path, write_nvram
from drive_daemon.service import DriveHost, DriveHostConfig, HostedDrive
from protocol.constants import MessageType
from protocol.manufacturing import make_drives
from protocol.transport import Transmit

TOKEN = ("127.0.0.21", 5000)


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes, to: tuple[str, int]) -> bool:
        self.sent.append(data)
        return True

    @property
    def serving(self) -> bool:
        return True

    async def close(self) -> None:
        pass


def _hosted(tmp_path: Path, writer) -> tuple[DriveHost, HostedDrive, _Recorder]:  # type: ignore[no-untyped-def]
    made = make_drives(1)[0]
    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(made, "127.0.0.101")], nvram_writer=writer)
    hosted = host.drives[made.csn]
    recorder = _Recorder()
    hosted.link = recorder
    hosted.powered = True
    return host, hosted, recorder


def _ack(n: int) -> Transmit:
    return Transmit(TOKEN, MessageType.KEY_ACK, b"ack%d" % n)


async def test_the_ack_waits_for_the_nvram_write_and_later_sends_keep_their_order(tmp_path: Path) -> None:
    gate = threading.Event()
    written: list[bytes] = []

    def slow(state_dir: Path, csn: bytes, data: bytes) -> None:
        assert gate.wait(10), "test gate never opened"
        write_nvram(state_dir, csn, data)
        written.append(data)

    host, hosted, recorder = _hosted(tmp_path, slow)
    hosted.apply(Output(sends=[_ack(1)], persist=True))
    hosted.apply(Output(sends=[_ack(2)]))  # no persist, but must not overtake the first
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert recorder.sent == [] and written == []
    gate.set()
    await asyncio.wait_for(host.flush(), 10)
    assert recorder.sent == [b"ack1", b"ack2"]
    assert nvram_path(tmp_path, hosted.csn).exists() and len(written) == 1
    hosted.apply(Output(sends=[_ack(3)]))  # nothing queued any more: sent at once
    assert recorder.sent[-1] == b"ack3"


async def test_a_failed_nvram_write_sends_no_ack_is_logged_once_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def failing(state_dir: Path, csn: bytes, data: bytes) -> None:
        raise OSError(28, "No space left on device")

    host, hosted, recorder = _hosted(tmp_path, failing)
    with caplog.at_level(logging.ERROR, logger="t10k.drive"):
        hosted.apply(Output(sends=[_ack(1)], persist=True))
        hosted.apply(Output(sends=[_ack(2)]))
        await asyncio.wait_for(host.flush(), 10)
    assert recorder.sent == [b"ack2"]  # the unrelated later send still goes, the ACK does not
    assert host.counters.nvram_failures == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert str(nvram_path(tmp_path, hosted.csn)) in errors[0] and "No space left" in errors[0]
    assert not nvram_path(tmp_path, hosted.csn).exists()


def test_write_nvram_leaves_the_new_file_and_no_temporary(tmp_path: Path) -> None:
    csn = make_drives(1)[0].csn
    write_nvram(tmp_path / "state", csn, b"one")
    write_nvram(tmp_path / "state", csn, b"two")
    assert nvram_path(tmp_path / "state", csn).read_bytes() == b"two"
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [f"drive-{csn.hex()}.json"]
