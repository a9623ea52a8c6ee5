"""A drive acknowledges only what is durable: its replies wait for the NVRAM write (issue 13, finding 4).

The asyncio shell owns persistence, so these tests inject a real store whose commits are held
back or fail (on its writer thread, like a slow or failing disk) and watch what the shell
hands its transport (no sockets: a recording stand-in).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Callable

import pytest

from drive_daemon.drive import Output
from drive_daemon.nvram import decode_nvram
from drive_daemon.nvram_store import STORE_NAME, NvramStore
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


def _store(commit: Callable[[NvramStore, dict[bytes, bytes]], None]) -> type[NvramStore]:
    """A real store whose commit (on its writer thread) goes through ``commit``."""
    class Store(NvramStore):
        def _commit(self, rows: dict[bytes, bytes]) -> None:
            commit(self, rows)

    return Store


def _hosted(tmp_path: Path, store: type[NvramStore]) -> tuple[DriveHost, HostedDrive, _Recorder]:
    made = make_drives(1)[0]
    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(made, "127.0.0.101")], nvram_store=store)
    hosted = host.drives[made.csn]
    recorder = _Recorder()
    hosted.link = recorder
    hosted.powered = True
    return host, hosted, recorder


def _ack(n: int) -> Transmit:
    return Transmit(TOKEN, MessageType.KEY_ACK, b"ack%d" % n)


async def test_the_ack_waits_for_the_nvram_write_and_later_sends_keep_their_order(tmp_path: Path) -> None:
    gate = threading.Event()
    written: list[dict[bytes, bytes]] = []

    def slow(store: NvramStore, rows: dict[bytes, bytes]) -> None:
        assert gate.wait(10), "test gate never opened"
        NvramStore._commit(store, rows)
        written.append(rows)

    host, hosted, recorder = _hosted(tmp_path, _store(slow))
    hosted.drive.nvram.okt_timestamp = 41
    hosted.apply(Output(sends=[_ack(1)], persist=True))
    hosted.drive.nvram.okt_timestamp = 42  # serialised at once: the first write keeps 41
    hosted.apply(Output(sends=[_ack(2)]))  # no persist, but must not overtake the first
    for _ in range(20):
        await asyncio.sleep(0.01)
    assert recorder.sent == [] and written == []
    gate.set()
    await asyncio.wait_for(host.flush(), 10)
    assert recorder.sent == [b"ack1", b"ack2"]
    assert len(written) == 1 and decode_nvram(written[0][hosted.csn], hosted.csn, hosted.made.pckey).okt_timestamp == 41
    hosted.apply(Output(sends=[_ack(3)]))  # nothing queued any more: sent at once
    assert recorder.sent[-1] == b"ack3"
    hosted.apply(Output(sends=[_ack(4)], persist=True))
    await asyncio.wait_for(host.flush(), 10)
    assert recorder.sent[-1] == b"ack4"
    await host.stop()
    again = NvramStore(tmp_path / STORE_NAME)
    assert decode_nvram(again.load_all()[hosted.csn], hosted.csn, hosted.made.pckey).okt_timestamp == 42
    again.close()


async def test_writes_of_many_drives_share_commits_and_each_drive_keeps_its_order(tmp_path: Path) -> None:
    """A pool rekey: every drive's write at once, a few transactions, each ACK after its own write."""
    made = make_drives(300)
    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(m, "127.0.0.101") for m in made])
    recorders = {}
    for hosted in host.drives.values():
        hosted.link = recorders[hosted.csn] = _Recorder()
        hosted.powered = True
    for round_ in (1, 2):
        for hosted in host.drives.values():
            hosted.drive.nvram.okt_timestamp = round_
            hosted.apply(Output(sends=[_ack(round_)], persist=True))
            hosted.apply(Output(sends=[_ack(10 + round_)]))
    await asyncio.wait_for(host.flush(), 30)
    assert all(r.sent == [b"ack1", b"ack11", b"ack2", b"ack12"] for r in recorders.values())
    assert host.nvram.store.stats.commits <= 6 and host.nvram.store.stats.rows >= 300
    await host.stop()
    again = DriveHost(DriveHostConfig(state_dir=tmp_path), [(m, "127.0.0.101") for m in made])
    assert {h.drive.nvram.okt_timestamp for h in again.drives.values()} == {2}
    await again.stop()


async def test_a_failed_nvram_write_sends_no_ack_is_logged_once_and_counted(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def failing(store: NvramStore, rows: dict[bytes, bytes]) -> None:
        raise OSError(28, "No space left on device")

    host, hosted, recorder = _hosted(tmp_path, _store(failing))
    with caplog.at_level(logging.ERROR, logger="t10k.drive"):
        hosted.apply(Output(sends=[_ack(1)], persist=True))
        hosted.apply(Output(sends=[_ack(2)]))
        await asyncio.wait_for(host.flush(), 10)
        hosted.apply(Output(sends=[_ack(3)], persist=True))  # the same error again: counted, not logged
        await asyncio.wait_for(host.flush(), 10)
    assert recorder.sent == [b"ack2"]  # the unrelated later send still goes, the ACKs do not
    assert host.counters.nvram_failures == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert str(tmp_path / STORE_NAME) in errors[0] and "No space left" in errors[0] and hosted.csn.hex() in errors[0]
    await host.stop()
    left = NvramStore(tmp_path / STORE_NAME)
    assert left.load_all() == {}
    left.close()


async def test_two_hosts_on_one_state_directory_keep_each_others_drives(tmp_path: Path) -> None:
    made = make_drives(40)
    config = DriveHostConfig(state_dir=tmp_path)
    hosts = [DriveHost(config, [(m, "127.0.0.101") for m in made[:20]]),
             DriveHost(config, [(m, "127.0.0.101") for m in made[20:]])]  # a connection each, one file
    for host in hosts:
        for hosted in host.drives.values():
            hosted.transport = _Recorder()  # type: ignore[assignment]
            hosted.powered = True
    for round_ in range(1, 6):
        for host in hosts:
            for hosted in host.drives.values():
                hosted.drive.nvram.okt_timestamp = round_
                hosted.apply(Output(sends=[_ack(round_)], persist=True))
    await asyncio.wait_for(asyncio.gather(*(h.flush() for h in hosts)), 30)
    assert [h.counters.nvram_failures for h in hosts] == [0, 0]
    for host in hosts:
        await host.stop()
    again = DriveHost(config, [(m, "127.0.0.101") for m in made])
    assert {h.drive.nvram.okt_timestamp for h in again.drives.values()} == {5}
    await again.stop()


async def test_a_datagram_the_socket_does_not_take_is_counted_not_tapped(tmp_path: Path) -> None:
    taps: list[bytes] = []
    made = make_drives(1)[0]
    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(made, "127.0.0.101")],
                     tap=lambda direction, transport, src, dst, data: taps.append(data))
    hosted = host.drives[made.csn]

    class Refusing(_Recorder):
        def send(self, data: bytes, to: tuple[str, int]) -> bool:
            return False  # a full send queue

    hosted.link = Refusing()
    hosted.powered = True
    hosted.apply(Output(sends=[_ack(1), _ack(2)]))
    assert host.counters.send_dropped == 2 and host.counters.datagrams_out == 0 and taps == []
    hosted.link = recorder = _Recorder()
    hosted.apply(Output(sends=[_ack(3)]))
    assert recorder.sent == [b"ack3"] and host.counters.send_dropped == 2 and host.counters.datagrams_out == 1
    await host.stop()
