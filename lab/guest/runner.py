"""Boot the guest in QEMU (TCG) with an iSCSI tape LUN as /dev/nst0; run a script or a shell.

QEMU's own iSCSI initiator (qemu-block-extra, libiscsi) logs in to the target and passes
the LUN through as ``scsi-generic`` on a virtio-scsi bus, so the guest's ``st`` and ``sg``
drivers see the tape exactly as on a real host. The guest has no NIC (``-nodefaults``).

The script travels as a second cpio archive appended to the cached initramfs (Linux unpacks
concatenated archives); results come back on the serial console as marker lines carrying a
per-run nonce. Every run is bounded by a timeout and the QEMU process is killed by its PID.
"""

from __future__ import annotations

import os
import re
import secrets
import selectors
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .build import GuestImage, ensure_image
from .cpio import CpioWriter
from .errors import GuestError

#: The initiator name QEMU logs in with (the host tools use their own).
GUEST_INITIATOR_IQN = "iqn.2026-11.org.t10k-lab:guest"
QEMU = "qemu-system-x86_64"
DEFAULT_MEMORY_MB = 384


@dataclass(frozen=True)
class Lun:
    """An iSCSI LUN: the portal (host, port), the target name and the LUN number."""

    host: str
    target: str
    port: int = 3260
    lun: int = 0

    @property
    def url(self) -> str:
        return f"iscsi://{self.host}:{self.port}/{self.target}/{self.lun}"


@dataclass
class GuestRun:
    """What one run of a script in the guest gave."""

    status: int | None            # the script's exit status; None if it did not finish in time
    output: str                   # what the script printed (between the BEGIN and EXIT markers)
    console: str                  # the whole serial console
    seconds: float                # wall time from starting QEMU to its end
    tape: bool | None             # whether /dev/nst0 appeared (None: no LUN attached)
    markers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == 0


def discover(host: str, port: int = 3260, *, timeout: float = 15) -> list[str]:
    """The target names a portal offers (SendTargets), as libiscsi's ``iscsi-ls`` reports them."""
    if shutil.which("iscsi-ls") is None:
        raise GuestError("iscsi-ls not found: apt-get install libiscsi-bin (or pass --target IQN)")
    try:
        out = subprocess.run(["iscsi-ls", f"iscsi://{host}:{port}"], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GuestError(f"discovery at {host}:{port} took more than {timeout:.0f} s") from None
    targets = re.findall(r"Target:(\S+)", out.stdout)
    if out.returncode != 0 or not targets:
        raise GuestError(f"no iSCSI target found at {host}:{port}: {(out.stderr or out.stdout).strip()[-300:]}")
    return targets


def qemu_argv(image: GuestImage, initrd: Path, lun: Lun | None, *, append: str, memory_mb: int,
              interactive: bool) -> list[str]:
    argv = [QEMU, "-accel", "tcg", "-m", f"{memory_mb}M", "-nographic", "-nodefaults", "-no-reboot",
            "-serial", "mon:stdio" if interactive else "stdio",
            "-kernel", str(image.kernel), "-initrd", str(initrd), "-append", append]
    if lun is not None:
        argv += ["-iscsi", f"initiator-name={GUEST_INITIATOR_IQN}", "-device", "virtio-scsi-pci,id=vs",
                 "-drive", f"file={lun.url},if=none,id=tape,format=raw",
                 "-device", "scsi-generic,drive=tape,bus=vs.0"]
    return argv


def _append(mode: str, lun: Lun | None, nonce: str, tape_wait: int) -> str:
    return (f"console=ttyS0 quiet loglevel=1 panic=-1 t10k.mode={mode} t10k.tape={int(lun is not None)} "
            f"t10k.nonce={nonce} t10k.wait={tape_wait}")


def _initrd_with(image: GuestImage, script: str, workdir: Path) -> Path:
    extra = CpioWriter()
    extra.file("t10k/run.sh", script.encode(), 0o755)
    path = workdir / "initrd.img"
    with path.open("wb") as out, image.initrd.open("rb") as base:
        shutil.copyfileobj(base, out)
        out.write(bytes(extra))
    return path


def run_script(script: str, *, lun: Lun | None, timeout: float = 120, image: GuestImage | None = None,
               memory_mb: int = DEFAULT_MEMORY_MB, tape_wait: int = 20,
               echo: Callable[[str], None] | None = None) -> GuestRun:
    """Boot, run ``script`` with bash in the guest, power off; bounded by ``timeout`` seconds."""
    image = image or ensure_image()
    nonce = secrets.token_hex(4)
    prefix = f"T10K-GUEST:{nonce}:"
    with tempfile.TemporaryDirectory(prefix="t10k-guest-") as tmp:
        work = Path(tmp)
        argv = qemu_argv(image, _initrd_with(image, script, work), lun, append=_append("run", lun, nonce, tape_wait),
                         memory_mb=memory_mb, interactive=False)
        started = time.monotonic()
        with (work / "qemu.err").open("w+") as err:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
            try:
                console = _collect(proc, prefix, started + timeout, echo)
            finally:
                _stop(proc, grace=5 if time.monotonic() < started + timeout else 0)
            err.seek(0)
            stderr = err.read()
        seconds = time.monotonic() - started
    text = console.replace("\r\n", "\n").replace("\r", "")
    markers = re.findall(re.escape(prefix) + r"(.*)", text)  # a marker may follow the BIOS's escape codes
    status = next((int(m.split()[1]) for m in markers if m.startswith("EXIT ")), None)
    tape = None if lun is None else any(m.startswith("TAPE ") for m in markers)
    if "BEGIN" not in markers:
        raise GuestError(f"the guest did not reach its script ({seconds:.0f} s of {timeout:.0f} s) "
                         f"(qemu: {stderr.strip()[-600:] or 'no error'}; console: {text.strip()[-600:]})")
    output = text.split(prefix + "BEGIN\n", 1)[1].split(prefix + "EXIT", 1)[0]
    return GuestRun(status, output, text, seconds, tape, markers)


def _collect(proc: subprocess.Popen[bytes], prefix: str, deadline: float, echo: Callable[[str], None] | None) -> str:
    """Read the console until QEMU exits or the deadline passes."""
    assert proc.stdout is not None
    chunks: list[bytes] = []
    pending = b""
    begun = False  # echo only what the script prints
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(min(left, 1.0)):
                if proc.poll() is not None:
                    break
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            chunks.append(data)
            if echo is not None:
                pending += data
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    s = line.decode(errors="replace").rstrip("\r")
                    if prefix in s:
                        begun = s.endswith(prefix + "BEGIN")
                    elif begun:
                        echo(s)
    return b"".join(chunks).decode(errors="replace")


def _stop(proc: subprocess.Popen[bytes], grace: float) -> None:
    """QEMU powers off by itself after the script; otherwise it is killed by PID."""
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def run_shell(*, lun: Lun | None, timeout: float, image: GuestImage | None = None,
              memory_mb: int = DEFAULT_MEMORY_MB, tape_wait: int = 20) -> int:
    """An interactive shell on the serial console (this terminal); QEMU is killed after ``timeout`` s."""
    image = image or ensure_image()
    with tempfile.TemporaryDirectory(prefix="t10k-guest-") as tmp:
        initrd = _initrd_with(image, "", Path(tmp))
        argv = qemu_argv(image, initrd, lun, append=_append("shell", lun, "shell", tape_wait), memory_mb=memory_mb,
                         interactive=True)
        proc = subprocess.Popen(argv)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"\nt10k lab guest: the shell's {timeout:.0f} s are up; stopping the guest", flush=True)
            proc.kill()
            proc.wait(timeout=10)
            return 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
