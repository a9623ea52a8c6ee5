"""The harness itself, proven against tgt's SSC LUN (a target nobody here wrote).

These assert what tgt does, including where it falls short of a real drive (REAL-CLIENTS.md):
READ POSITION is a stub (``mt tell`` fails), a LOAD UNLOAD leaves it ready, LOCATE is
unsupported, and Bacula's ``btape test`` fails its append test. The same scripts run against
our drive in test_drive_guest.py, where every one of those must pass.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.guest.build import GuestImage
from lab.guest.runner import GuestRun, Lun, run_script
from tests.realclients.conftest import NET
from lab.tgt import TgtTape
from tests.realclients.scripts import SEQ_FILES, TAR_ROUND_TRIP, checksums, seq_sha256

pytestmark = pytest.mark.network
ROOT = Path(__file__).resolve().parents[2]


def on_tgt(tgt: TgtTape, image: GuestImage, script: str, timeout: float = 90) -> GuestRun:
    run = run_script(script, lun=Lun(tgt.address, tgt.iqn, lun=tgt.lun), timeout=timeout, image=image)
    assert run.tape, run.console[-2000:]
    assert run.status == 0, run.output[-3000:]
    return run


def test_gnu_tar_writes_a_tree_to_tgt_and_reads_it_back_identical(tgt: TgtTape, guest_image: GuestImage) -> None:
    out = on_tgt(tgt, guest_image, TAR_ROUND_TRIP).output
    assert "TAR-CREATE 0" in out and "TAR-EXTRACT 0" in out, out
    before, after = checksums(out, "BEFORE"), checksums(out, "AFTER")
    assert before == after and len(after) == 4
    for path, n in SEQ_FILES.items():
        assert after[path] == seq_sha256(n)


def test_mt_against_tgt(tgt: TgtTape, guest_image: GuestImage) -> None:
    out = on_tgt(tgt, guest_image, """
mt status
for i in 1 2 3; do echo "file $i" | dd of=/dev/nst0 bs=512 conv=sync 2>/dev/null; done
mt rewind; echo "REWIND $?"; mt status
mt fsf 2; echo "FSF $?"; mt status
mt bsf 1; echo "BSF $?"; mt status
mt eod; echo "EOD $?"; mt status
mt tell; echo "TELL $?"
mt setblk 512; echo "SETBLK $?"; mt status
mt offline; echo "OFFLINE $?"; sg_turs /dev/sg0; echo "TUR $?"
""").output
    assert out.startswith("SCSI 2 tape drive:\nFile number=0, block number=0, partition=0.\n"), out
    assert "BOT ONLINE" in out.split("REWIND 0", 1)[1].split("FSF", 1)[0]
    after_fsf = out.split("FSF 0\n", 1)[1]
    assert after_fsf.startswith("SCSI 2 tape drive:\nFile number=2, block number=0, partition=0.\n")
    assert "EOF ONLINE" in after_fsf.split("BSF", 1)[0]
    assert out.split("BSF 0\n", 1)[1].startswith("SCSI 2 tape drive:\nFile number=1, block number=-1,")
    assert " EOD ONLINE" in out.split("EOD 0\n", 1)[1].split("TELL", 1)[0]
    assert "/dev/nst0: Input/output error\nTELL 2" in out          # tgt: READ POSITION is a stub
    assert "Tape block size 512 bytes." in out.split("SETBLK 0\n", 1)[1]
    assert "OFFLINE 0\nTUR 0" in out                                 # tgt: still ready after UNLOAD


def test_sg_raw_and_sg_requests_show_tgt_sense_bytes(tgt: TgtTape, guest_image: GuestImage) -> None:
    out = on_tgt(tgt, guest_image, """
sg_turs /dev/sg0; echo "TUR $?"
sg_raw -v /dev/sg0 2b 00 00 00 00 00 00 00 00 00; echo "LOCATE $?"
sg_requests -H /dev/sg0; echo "REQUEST-SENSE $?"
""").output
    # The power-on UNIT ATTENTION first (29h/00h), then LOCATE(10), which tgt does not implement.
    assert "Sense key: Unit Attention\nAdditional sense: Power on, reset, or bus device reset occurred" in out
    assert "TUR 6" in out
    assert ("Fixed format, current; Sense key: Illegal Request\nAdditional sense: Invalid command operation code\n"
            " Raw sense data (in hex), sb_len=18, embedded_len=18\n"
            "        70 00 05 00 00 00 00 0a  00 00 00 00 20 00 00 00\n        00 00\n") in out
    assert "LOCATE 9" in out  # sg_raw's exit status for ILLEGAL REQUEST (sg3_utils: SG_LIB_CAT_ILLEGAL_REQ)
    assert " 00     70 00 05 00 00 00 00 0a  00 00 00 00 20 00 00 00\n 10     00 00\nREQUEST-SENSE 0" in out


@pytest.mark.timeout(600)
def test_btape_runs_to_completion_and_reports_tgts_append_failure(tgt: TgtTape, guest_image: GuestImage) -> None:
    run = on_tgt(tgt, guest_image, """
printf 'test\\nquit\\n' | btape -c /etc/bacula/bacula-sd.conf /dev/nst0 > /tmp/btape.out 2>&1
echo "BTAPE $?"
grep -v 'btape.c:191[79]' /tmp/btape.out
""", timeout=540)
    out = run.output
    assert out.startswith("BTAPE 1\n"), out[:2000]
    assert out.count("=== Test Succeeded. End Write, rewind, and re-read test ===") == 2  # what tgt does right
    assert out.count("10000 blocks re-read correctly.") == 2
    assert "We should be in file 4. I am at file 5. This is NOT correct!!!!" in out
    assert "Append test failed.\n" in out and "Unable to correct the problem." in out


def test_t10k_lab_guest_discovers_the_target_and_returns_the_exit_status(tgt: TgtTape) -> None:
    result = subprocess.run([sys.executable, "-m", "lab.cli", "lab", "guest", "--ip", tgt.address, "--lun",
                             str(tgt.lun), "--command", "lsscsi; mt status | head -2; exit 3"], cwd=ROOT,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("[0:0:0:0]    tape    IET      VIRTUAL-TAPE     0001  /dev/st0 \n"), result.stdout
    assert "SCSI 2 tape drive:\nFile number=0, block number=0, partition=0.\n" in result.stdout
    assert "t10k lab guest: exit status 3 in " in result.stderr
    wrong = subprocess.run([sys.executable, "-m", "lab.cli", "lab", "guest", "--ip", NET.host(9), "--command", "true"],
                           cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 1 and f"t10k: error: no iSCSI target found at {NET.host(9)}:3260" in wrong.stderr
    assert "Traceback" not in wrong.stderr
