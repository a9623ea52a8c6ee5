"""A drive host removes the temporary NVRAM images a kill left behind (issue 13, low).

The temporary image is made by a real process killed with SIGKILL in mid-write (between
writing the temporary file and renaming it), not by hand.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from drive_daemon.nvram import Nvram, load_nvram, nvram_path, save_nvram, temporary_path
from drive_daemon.service import DriveHost, DriveHostConfig
from protocol.manufacturing import make_drives

ROOT = Path(__file__).resolve().parents[2]

_KILLED_IN_MID_WRITE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from drive_daemon import nvram
    state, csn = Path(sys.argv[1]), bytes.fromhex(sys.argv[2])
    def stall(src, dst):  # the kill lands here: written and synced, never renamed
        print("stalled", flush=True)
        time.sleep(60)
    os.replace = stall
    nvram.write_nvram(state, csn, b'{"half": "an image"}')
""")


def _kill_in_mid_write(state: Path, csn: bytes) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_IN_MID_WRITE, str(state), csn.hex()], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "stalled"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def test_a_host_removes_the_temporary_image_a_kill_left_and_keeps_the_committed_one(tmp_path: Path) -> None:
    mine, other = make_drives(2)
    committed = Nvram(device_key=os.urandom(32), device_key_id=b"\x00\x00\x00\x05\x00\x00\x00\x01",
                      device_key_timestamp=7, okt_timestamp=9)
    save_nvram(tmp_path, mine.csn, mine.pckey, committed)
    before = nvram_path(tmp_path, mine.csn).read_bytes()
    _kill_in_mid_write(tmp_path, mine.csn)
    _kill_in_mid_write(tmp_path, other.csn)
    assert temporary_path(tmp_path, mine.csn).exists() and temporary_path(tmp_path, other.csn).exists()

    host = DriveHost(DriveHostConfig(state_dir=tmp_path), [(mine, "127.0.0.101")])
    assert not temporary_path(tmp_path, mine.csn).exists()
    # another drive's image may be in mid-write in another process: not this host's to remove
    assert temporary_path(tmp_path, other.csn).exists()
    assert nvram_path(tmp_path, mine.csn).read_bytes() == before
    assert host.drives[mine.csn].drive.nvram == committed == load_nvram(tmp_path, mine.csn, mine.pckey)
