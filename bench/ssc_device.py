"""The SSC device's own cost, in process (no transport): WRITE(6)/READ(6) with encryption on.

    python bench/ssc_device.py [--size-mib 256] [--block-kib 256]

An encrypting drive with a media key, a cartridge in a temporary directory, one I_T nexus:
SIZE written in variable-length blocks through SscDevice.execute, a filemark, a rewind, and
read back. What the iSCSI target adds on top is measured by the iSCSI benchmarks.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from drive_daemon.cartridge import Cartridge
from drive_daemon.drive import Drive, MediaKeySet, Output
from drive_daemon.ssc import SscDevice
from drive_daemon.tape import TapeSession
from protocol import scsi
from protocol.constants import ScsiStatus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--block-kib", type=int, default=256)
    args = ap.parse_args()
    block = os.urandom(args.block_kib * 1024)
    count = max(1, args.size_mib * 1024 // args.block_kib)
    with tempfile.TemporaryDirectory() as tmp:
        library = Path(tmp)
        Cartridge.create(library, "BENCH1")
        drive = Drive(bytes.fromhex("5700000000000001"), bytes(32), encrypting=True)
        drive.nvram.device_key = os.urandom(32)
        key_id = bytes.fromhex("0a0b0c0d00000001")
        drive.media = MediaKeySet(1, key_id, {key_id: os.urandom(32)})
        tape = TapeSession(drive, library)
        tape.load("BENCH1")
        device = SscDevice(tape)
        nexus = "iqn.2026-11.org.t10k-lab:host,i,0x1"
        device.execute(nexus, scsi.TestUnitReady().build(), None, 0.0)  # the power-on attention
        write, read = scsi.Write6(len(block)).build(), scsi.Read6(len(block)).build()
        start = time.perf_counter()
        for _ in range(count):
            assert device.execute(nexus, write, block, 0.0).status == ScsiStatus.GOOD
        assert device.execute(nexus, scsi.WriteFilemarks6(1).build(), None, 0.0).status == ScsiStatus.GOOD
        wrote = time.perf_counter() - start
        device.execute(nexus, scsi.Rewind().build(), None, 0.0)
        start = time.perf_counter()
        for _ in range(count):
            assert device.execute(nexus, read, None, 0.0).data_in == block
        read_s = time.perf_counter() - start
        tape.unload(Output())
    mb = count * len(block) / 1e6
    print(f"SscDevice, {count} blocks of {args.block_kib} KiB, AES-256-GCM: write {mb / wrote:.0f} MB/s, "
          f"read {mb / read_s:.0f} MB/s")


if __name__ == "__main__":
    main()
