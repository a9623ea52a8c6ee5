"""tgt (the Linux SCSI target framework, in userspace) serving an SSC tape LUN: the peer the
harness is proven against before our own drive (REAL-CLIENTS.md has the recipe)."""

from __future__ import annotations

import random
import subprocess
import time
from pathlib import Path

TGT_IQN = "iqn.2026-11.org.t10k-lab:tgt-harness"
TGT_TAPE_LUN = 1  # tgt's LUN 0 is its controller


class Tgt:
    """tgtd on ``ip``:3260 with one target and a fresh tape image on LUN 1.

    tgtd's management socket is a file shared by every network namespace, so each instance
    takes its own control port. It ignores SIGTERM: it is stopped through tgtadm, then by PID.
    """

    def __init__(self, workdir: Path, ip: str, *, size_mb: int = 4096) -> None:
        self.workdir, self.ip, self.size_mb = workdir, ip, size_mb
        self.control = random.randrange(20000, 30000)
        self.proc: subprocess.Popen[bytes] | None = None

    def _adm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["tgtadm", "-C", str(self.control), "--lld", "iscsi", *args], capture_output=True,
                                text=True, timeout=20)
        if check and result.returncode != 0:
            raise AssertionError(f"tgtadm {' '.join(args)}: {result.stderr}")
        return result

    def start(self) -> Tgt:
        image = self.workdir / "tgt-tape.img"
        subprocess.run(["tgtimg", "--op", "new", "--device-type", "tape", "--barcode", "TGT001", "--size",
                        str(self.size_mb), "--type", "data", "--file", str(image), "--thin-provisioning"],
                       check=True, capture_output=True, timeout=20)
        for _ in range(5):  # another tgtd may hold the control port we drew
            log = (self.workdir / "tgtd.log").open("wb")
            self.proc = subprocess.Popen(["tgtd", "-f", "-C", str(self.control), "--iscsi",
                                          f"portal={self.ip}:3260"], stdout=log, stderr=log)
            for _ in range(50):
                if self.proc.poll() is not None or self._adm("--mode", "target", "--op", "show",
                                                             check=False).returncode == 0:
                    break
                time.sleep(0.1)
            if self.proc.poll() is None:
                break
            self.control = random.randrange(20000, 30000)
        else:
            raise AssertionError(f"tgtd did not start: {(self.workdir / 'tgtd.log').read_text()[-500:]}")
        self._adm("--mode", "target", "--op", "new", "--tid", "1", "--targetname", TGT_IQN)
        self._adm("--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", str(TGT_TAPE_LUN),
                  "--bstype", "ssc", "--device-type", "tape", "--backing-store", str(image))
        self._adm("--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL")
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self._adm("--mode", "target", "--op", "delete", "--force", "--tid", "1", check=False)
        subprocess.run(["tgtadm", "-C", str(self.control), "--mode", "system", "--op", "delete"],
                       capture_output=True, timeout=20)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
