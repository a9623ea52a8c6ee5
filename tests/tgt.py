"""tgt (the Linux SCSI target framework, in userspace) serving an SSC tape LUN, for tests and
benchmarks of our initiator against a target nobody here wrote (REAL-CLIENTS.md).

Each instance has its own management channel (``tgtd -C N``), so instances started by
other tests or helpers at the same time do not meet.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from pathlib import Path
from typing import AsyncIterator

TGT_TARGET = "iqn.2026-11.org.t10k-lab:tgt-tape"
#: tgt's LUN 0 is its controller; the tape is LUN 1
TGT_TAPE_LUN = 1
#: so that our initiator's 256 KiB writes need no R2T round trip (tgt's defaults are smaller)
TGT_PARAMS = {"MaxRecvDataSegmentLength": "262144", "FirstBurstLength": "262144", "MaxBurstLength": "16776192",
              "InitialR2T": "No", "HeaderDigest": "None,CRC32C", "DataDigest": "None,CRC32C"}


async def _run(*args: str, check: bool = True) -> int:
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    if check and proc.returncode:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {out.decode(errors='replace')}")
    return proc.returncode or 0


@contextlib.asynccontextmanager
async def running_tgt(workdir: Path, ip: str, port: int, *, size_mb: int = 2048,
                      params: dict[str, str] | None = None, pids: list[int] | None = None) -> AsyncIterator[str]:
    """tgtd at ip:port with one target (yielded name) whose LUN 1 is a fresh tape image;
    tgtd's PID is appended to ``pids`` when given (benchmarks read its CPU time)."""
    workdir.mkdir(parents=True, exist_ok=True)
    image = workdir / "tape.img"
    await _run("tgtimg", "--op", "new", "--device-type", "tape", "--barcode", "T10K01", "--size", str(size_mb),
               "--type", "data", "--file", str(image))
    control = str(random.randrange(1000, 30000))
    adm = ("tgtadm", "-C", control, "--lld", "iscsi")
    log = open(workdir / "tgtd.log", "wb")
    daemon = await asyncio.create_subprocess_exec("tgtd", "-f", "-C", control, "--iscsi", f"portal={ip}:{port}",
                                                  stdout=log, stderr=log)
    if pids is not None:
        pids.append(daemon.pid)
    try:
        for _ in range(100):
            if daemon.returncode is not None:
                raise RuntimeError(f"tgtd exited {daemon.returncode}: {(workdir / 'tgtd.log').read_text()}")
            if await _run(*adm, "--mode", "target", "--op", "show", check=False) == 0:
                break
            await asyncio.sleep(0.05)
        await _run(*adm, "--mode", "target", "--op", "new", "--tid", "1", "--targetname", TGT_TARGET)
        await _run(*adm, "--mode", "logicalunit", "--op", "new", "--tid", "1", "--lun", str(TGT_TAPE_LUN),
                   "--bstype", "ssc", "--device-type", "tape", "--backing-store", str(image))
        await _run(*adm, "--mode", "target", "--op", "bind", "--tid", "1", "--initiator-address", "ALL")
        for key, value in (TGT_PARAMS if params is None else params).items():
            await _run(*adm, "--mode", "target", "--op", "update", "--tid", "1", "--name", key, "--value", value)
        yield TGT_TARGET
    finally:
        # tgtd ignores SIGTERM: delete the target, then the system (REAL-CLIENTS.md)
        await _run(*adm, "--mode", "target", "--op", "delete", "--force", "--tid", "1", check=False)
        await _run("tgtadm", "-C", control, "--mode", "system", "--op", "delete", check=False)
        try:
            await asyncio.wait_for(daemon.wait(), 10)
        except asyncio.TimeoutError:
            daemon.kill()  # our own child, by its PID
            await daemon.wait()
        log.close()
        with contextlib.suppress(OSError):
            os.unlink(image)
