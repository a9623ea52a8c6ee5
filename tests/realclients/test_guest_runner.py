"""The guest image and the runner, without a tape: real tools (not busybox applets), no network
card, the script's output and exit status, and the timeout that stops a stuck guest."""

from __future__ import annotations

import re

from lab.guest.build import GuestImage
from lab.guest.runner import run_script


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
