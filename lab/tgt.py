"""tgt (the Linux SCSI target framework, ``tgtd``) serving one SSC tape LUN: a peer nobody here wrote.

The one harness for tgt: tests (tests/integration, tests/realclients) and benchmarks
(bench/iscsi_throughput.py, bench/iscsi_transport.py) point real clients and our initiator
at it. tgtd runs in userspace; it ignores SIGTERM, so it is stopped the way REAL-CLIENTS.md
says (delete the target, then the system), and killed by its own PID only if that fails.
Each instance listens on the ``address:port`` it is given and has its own management socket
(``-C PORT``): those are files under /var/run/tgtd shared by every network namespace, so
an instance only uses a port once its own tgtd holds that port's lock.

    with TgtTape(workdir, "127.0.0.1") as tgt:          # blocking callers
        tgt.iqn, tgt.lun   # the tape is LUN 1 (tgt keeps LUN 0 for its controller)
    async with TgtTape(workdir, "127.0.0.1") as tgt:    # asyncio callers: the same code in a thread
        tgt.pid            # tgtd's PID (benchmarks read its CPU time)
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import time
from pathlib import Path

from protocol.constants import ISCSI_PORT
from .errors import TgtError  # noqa: F401 - re-exported: its home before lab/errors.py

TGT_IQN = "iqn.2026-11.org.t10k-lab:tgt-tape"
TGT_LUN = 1
_TID = 1
TGT_RUN_DIR = "/var/run/tgtd"
#: tgtd's management port (-C) must be below 32768; each instance draws its own.
CONTROL_PORTS = (1024, 32767)
CONTROL_PORT_ATTEMPTS = 5
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


#: Session keys tgt offers by default are small (8 KiB data segments, InitialR2T=Yes): tests that
#: exercise R2T keep them; the benchmarks and the tuned tests offer what our own target negotiates,
#: and digests as an option (the initiator picks).
FAST_SESSION = {"MaxRecvDataSegmentLength": "262144", "InitialR2T": "No", "ImmediateData": "Yes",
                "FirstBurstLength": "262144", "MaxBurstLength": "1048576",
                "HeaderDigest": "None,CRC32C", "DataDigest": "None,CRC32C"}



def tgt_available() -> bool:
    return all(shutil.which(tool) for tool in ("tgtd", "tgtadm", "tgtimg"))


def _lock_holders(lock_file: Path) -> set[int]:
    """PIDs holding a POSIX lock on ``lock_file`` (from /proc/locks); empty if none or no file."""
    try:
        inode = lock_file.stat().st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return set()
    holders = set()
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        if len(fields) >= 6 and fields[5].rsplit(":", 1)[-1] == str(inode):
            holders.add(int(fields[4]))
    return holders


class TgtTape:
    """One tgtd process with one target holding one tape LUN, on ``address:port``."""

    def __init__(self, workdir: Path, address: str = "127.0.0.1", *, port: int = ISCSI_PORT,
                 iqn: str = TGT_IQN, size_mib: int = 4096, barcode: str = "TGT001",
                 session: dict[str, str] | None = None, chap: tuple[str, str] | None = None) -> None:
        self.workdir, self.address, self.port, self.iqn = Path(workdir), address, port, iqn
        self.session, self.chap = session or {}, chap
        self.size_mib, self.barcode = size_mib, barcode
        self.image = self.workdir / f"{barcode}.tgt-tape"
        self.lun = TGT_LUN
        self.control_port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = self.workdir / "tgtd.log"

    # --- lifecycle --------------------------------------------------------------

    def __enter__(self) -> TgtTape:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> TgtTape:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def start(self) -> None:
        """tgtd up with the target, the LUN, the session keys and CHAP; stopped again if any step fails."""
        if not tgt_available():
            raise TgtError("tgt is not installed: apt-get install --no-install-recommends tgt")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.new_tape()
        for attempt in range(CONTROL_PORT_ATTEMPTS):  # another tgtd may take the port we drew
            if self._spawn():
                break
            if attempt == CONTROL_PORT_ATTEMPTS - 1:
                raise TgtError(f"tgtd did not start on {self.address}:{self.port}: {self._log_tail()}")
        try:
            self._adm("--lld", "iscsi", "--mode", "target", "--op", "new", "--tid", str(_TID),
                      "--targetname", self.iqn)
            self._add_lun()
            for key, value in self.session.items():
                self._adm("--lld", "iscsi", "--mode", "target", "--op", "update", "--tid", str(_TID),
                          "--name", key, "--value", value)
            if self.chap is not None:  # initiators must prove this user and secret (CHAP)
                user, secret = self.chap
                self._adm("--lld", "iscsi", "--mode", "account", "--op", "new", "--user", user, "--password", secret)
                self._adm("--lld", "iscsi", "--mode", "account", "--op", "bind", "--tid", str(_TID), "--user", user)
            self._adm("--lld", "iscsi", "--mode", "target", "--op", "bind", "--tid", str(_TID),
                      "--initiator-address", "ALL")
        except BaseException:
            self.stop()
            raise

    def _spawn(self) -> bool:
        """Start tgtd on a free management port; False if it exits (that port was taken).

        Ready means our tgtd holds that port's lock file and answers tgtadm: a tgtadm answer
        alone could come from another instance that won the same port."""
        taken = {p.name for p in Path(TGT_RUN_DIR).glob("socket.*")} if Path(TGT_RUN_DIR).is_dir() else set()
        self.control_port = next(p for p in iter(lambda: random.randint(*CONTROL_PORTS), None)
                                 if f"socket.{p}" not in taken)
        lock = Path(TGT_RUN_DIR, f"socket.{self.control_port}.lock")
        with open(self._log, "ab") as log:
            self._proc = subprocess.Popen(
                ["tgtd", "-f", "-C", str(self.control_port), "--iscsi", f"portal={self.address}:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while (self._proc.pid not in _lock_holders(lock)
               or self._adm("--mode", "system", "--op", "show", check=False).returncode != 0):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                self._proc = None
                return False
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        """Delete the target, then the system (tgtd ignores SIGTERM); its PID is killed only if it stays."""
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._adm("--lld", "iscsi", "--mode", "target", "--op", "delete", "--force", "--tid", str(_TID),
                      check=False)
            self._adm("--mode", "system", "--op", "delete", check=False)
            try:
                self._proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._kill()
        self._proc = None
        lock = Path(TGT_RUN_DIR, f"socket.{self.control_port}.lock")
        if not _lock_holders(lock):  # leave the files alone if another tgtd took the port meanwhile
            for leftover in (f"socket.{self.control_port}", lock.name):
                Path(TGT_RUN_DIR, leftover).unlink(missing_ok=True)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # --- the tape -----------------------------------------------------------------

    def new_tape(self) -> None:
        """A blank cartridge image (sparse), replacing any earlier one."""
        self.image.unlink(missing_ok=True)
        result = subprocess.run(["tgtimg", "--op", "new", "--device-type", "tape", f"--barcode={self.barcode}",
                                 f"--size={self.size_mib}", "--type=data", f"--file={self.image}",
                                 "--thin-provisioning"], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            raise TgtError(f"tgtimg could not make {self.image}: {result.stderr.strip() or result.stdout.strip()}")

    def reload_blank(self) -> None:
        """Swap in a blank cartridge: the LUN is deleted, the image remade and the LUN added again."""
        self._adm("--lld", "iscsi", "--mode", "logicalunit", "--op", "delete", "--tid", str(_TID),
                  "--lun", str(self.lun))
        self.new_tape()
        self._add_lun()

    def _add_lun(self) -> None:
        self._adm("--lld", "iscsi", "--mode", "logicalunit", "--op", "new", "--tid", str(_TID),
                  "--lun", str(self.lun), "--bstype", "ssc", "--device-type", "tape",
                  "--backing-store", str(self.image))

    # --- helpers ------------------------------------------------------------------

    def _adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["tgtadm", "-C", str(self.control_port), *args], capture_output=True, text=True,
                                timeout=30)
        if check and result.returncode != 0:
            raise TgtError(f"tgtadm {' '.join(args)} failed: {(result.stderr or result.stdout).strip()}")
        return result

    def _kill(self) -> None:
        """Our own child, by its PID."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(STOP_TIMEOUT)

    def _log_tail(self) -> str:
        try:
            return " | ".join(self._log.read_text(errors="replace").strip().splitlines()[-3:])
        except OSError:
            return "(no log)"
