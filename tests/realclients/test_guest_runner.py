"""The guest image and the runner, without a tape: real tools (not busybox applets), no network
card, the script's output and exit status, and the timeout that stops a stuck guest."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path

from lab.guest.build import GuestImage
from lab.guest.runner import run_script

ROOT = Path(__file__).resolve().parents[2]


def test_the_guest_has_the_real_tools_and_no_network(guest_image: GuestImage) -> None:
    run = run_script("""
echo "tar=$(tar --version | head -1)"
echo "tar-from-sh=$(sh -c 'tar --version' | head -1)"
echo "mt=$(mt -h 2>&1 | head -1)"
echo "stenc=$(stenc --version 2>/dev/null | head -1)"
echo "sg_raw=$(sg_raw --version 2>&1 | grep -m1 '^sg_raw')"
echo "btape=$(btape -? 2>&1 | grep Version)"
echo "lsscsi=$(lsscsi --version 2>&1)"
echo "sha256sum=$(printf abc | sha256sum)"
echo "net=$(ls /sys/class/net)"
echo "modules=$(cut -d' ' -f1 /proc/modules | sort | tr '\\n' ' ')"
exit 7
""", lun=None, image=guest_image, timeout=90)
    assert run.status == 7 and run.tape is None
    seen = dict(line.split("=", 1) for line in run.output.splitlines())
    assert seen["tar"] == seen["tar-from-sh"] == "tar (GNU tar) 1.34"      # GNU tar, even from sh -c
    assert seen["mt"].startswith("usage: mt [-v] [--version] [-h] [ -f device ]")  # mt-st, not busybox's mt
    assert seen["stenc"].startswith("stenc v1.0.7")
    assert seen["sg_raw"].startswith("sg_raw 0.4") and "Version: 9.6.7" in seen["btape"]
    assert seen["lsscsi"].startswith("version: 0.31")               # lsscsi, not busybox's
    assert seen["sha256sum"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -"
    assert seen["net"] == "lo"                                        # no NIC: the guest is off every network
    assert set(seen["modules"].split()) >= {"st", "sg", "virtio_scsi", "virtio_pci", "scsi_mod"}
    assert re.search(r"T10K-GUEST:[0-9a-f]{8}:EXIT 7", run.console)


def test_a_script_that_overruns_is_stopped(guest_image: GuestImage) -> None:
    run = run_script("echo started; sleep 600; echo never", lun=None, image=guest_image, timeout=20)
    assert run.status is None and run.output.strip() == "started"


def test_the_interactive_shell_takes_commands_on_the_serial_console(guest_image: GuestImage) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "lab.cli", "lab", "guest", "--timeout", "90"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdin is not None and proc.stdout is not None
    seen = b""
    try:
        deadline = time.monotonic() + 90
        while b"bash-5.2# " not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                seen += chunk
        proc.stdin.write(b"echo shell-$((6*7)); tar --version | head -1; exit\n")
        proc.stdin.flush()
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    text = (seen + rest).decode(errors="replace").replace("\r", "")
    assert "/dev/nst0 is the drive." in text and "\nshell-42\ntar (GNU tar) 1.34\n" in text, text[-1500:]
    assert proc.returncode == 0
