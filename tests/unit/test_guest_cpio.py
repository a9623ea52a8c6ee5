"""The initramfs writer against GNU cpio: what the kernel unpacks, cpio -i unpacks the same way."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from lab.guest.cpio import CpioWriter


def test_gnu_cpio_reads_files_links_modes_and_an_appended_archive(tmp_path: Path) -> None:
    first = CpioWriter()
    first.file("init", b"#!/bin/sh\n", 0o755)
    first.file("usr/bin/tool", bytes(range(256)) * 3 + b"x", 0o755)
    first.symlink("bin/sh", "bash")
    first.file("init", b"ignored: the first entry of a name wins")
    second = CpioWriter()
    second.file("t10k/run.sh", b"echo hi\n", 0o755)
    (tmp_path / "x").mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=bytes(first) + bytes(second), cwd=tmp_path / "x", check=True,
                   timeout=20)
    root = tmp_path / "x"
    assert (root / "init").read_bytes() == b"#!/bin/sh\n" and os.access(root / "init", os.X_OK)
    assert (root / "usr/bin/tool").read_bytes() == bytes(range(256)) * 3 + b"x"
    assert os.readlink(root / "bin/sh") == "bash"
    assert len(bytes(first)) % 4 == 0 and "usr/bin" in first
    # GNU cpio stops at the first trailer; the kernel goes on to the appended archive. Read it alone:
    (tmp_path / "y").mkdir()
    subprocess.run(["cpio", "-id", "--quiet"], input=bytes(second), cwd=tmp_path / "y", check=True, timeout=20)
    assert (tmp_path / "y/t10k/run.sh").read_bytes() == b"echo hi\n"
