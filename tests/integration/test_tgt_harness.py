"""lab/tgt.py, the one harness for tgt: instances at once never share a management port,
and tgtd is stopped (tgtadm, then its PID) even when the body fails."""

from __future__ import annotations

import itertools
import random
import threading
from pathlib import Path

import pytest

from host.iscsi_client import discover
from lab.tgt import TgtTape

pytestmark = pytest.mark.network

IP = "127.0.0.33"


def alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


async def test_instances_drawing_the_same_control_port_each_get_their_own(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    draws = itertools.chain([30991] * 3, (random.randrange(1024, 30000) for _ in range(50)))
    lock = threading.Lock()

    def same_port_first(low: int, high: int) -> int:
        with lock:
            return next(draws)

    monkeypatch.setattr(random, "randint", same_port_first)
    tapes = [TgtTape(tmp_path / str(i), IP, port=3270 + i, size_mib=16) for i in range(3)]
    starts = [threading.Thread(target=tape.start) for tape in tapes]
    for thread in starts:
        thread.start()
    for thread in starts:
        thread.join(60)
    try:
        assert all(tape.pid for tape in tapes)
        assert len({tape.control_port for tape in tapes}) == 3 and 30991 in {tape.control_port for tape in tapes}
        for tape in tapes:
            assert await discover(IP, tape.port) == [(tape.iqn, f"{IP}:{tape.port},1")]
    finally:
        pids = [tape.pid for tape in tapes]
        for tape in tapes:
            tape.stop()
    assert not [pid for pid in pids if pid and alive(pid)]


async def test_tgtd_is_stopped_when_the_body_fails(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="the body fails"):
        async with TgtTape(tmp_path, IP, port=3273, size_mib=16) as tape:
            pid = tape.pid
            assert pid and alive(pid)
            raise RuntimeError("the body fails")
    assert not alive(pid)
