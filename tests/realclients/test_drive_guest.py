"""Real clients against our drive: Linux st, GNU tar, mt-st, stenc, sg3_utils and Bacula's btape
in a QEMU guest whose /dev/nst0 is an emulated T10000's iSCSI LUN.

What these tests assume of the merged tree (issue 9, the scsi-iscsi and scsi-ssc branches):
- every drive a ``Lab`` hosts (and every ``t10k drive run``) serves an iSCSI target at
  (drive IP, ``ISCSI_PORT`` 3260) named ``drive_iqn(csn)``, with the tape on LUN 0;
- ``t10k tape load --ip IP VOLSER`` loads a cartridge of the drive's library and
  ``t10k tape unload --ip IP`` unloads it (the operator, through the VOP);
- sense as docs/SCSI.md (scsi-ssc) documents it: fixed format (70h, F0h with a residue) with
  autosense, the FSC in octets 18-19 and a missing key's ID in octets 20-27;
- SECURITY PROTOCOL IN page 0020h: encryption mode 02, decryption mode 03 (stenc: "mixed"), key
  instance counter = the write key's ordinal; page 0021h: the next block's status.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

import pytest

from kms_client import station
from lab.addresses import free_net
from lab.cluster import Lab, LabPlan
from lab.guest.build import GuestImage
from lab.guest.runner import GuestRun, Lun, run_script
from protocol.constants import ISCSI_PORT, ErrorCode, drive_iqn  # type: ignore[attr-defined]
from protocol.manufacturing import format_manufacturing, make_drives
from tests.realclients.scripts import SEQ_FILES, TAR_ROUND_TRIP, checksums, seq_sha256

pytestmark = pytest.mark.network

ROOT = Path(__file__).resolve().parents[2]
T10K = [sys.executable, "-m", "lab.cli"]
NET = free_net()  # beside any lab, the README's daemons included
TOKEN_IP, DRIVE_IP, PLAIN_DRIVE_IP = NET.token_ip(0), NET.drive_ip(0), NET.drive_ip(1)
POOL = "pool-1"
FSC = slice(18, 20)
KEY_ID = slice(20, 28)


@dataclass
class Site:
    lab: Lab
    key: bytes
    image: GuestImage

    @property
    def csn(self) -> bytes:
        return self.lab.drive_csns["drive-01"]

    async def t10k(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(*T10K, *args, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 0, f"t10k {' '.join(args)}: {err.decode()}"
        return out.decode()

    async def load(self, volser: str, ip: str = DRIVE_IP) -> None:
        await self.t10k("tape", "load", "--ip", ip, volser)

    async def unload(self, ip: str = DRIVE_IP) -> None:
        await self.t10k("tape", "unload", "--ip", ip)

    async def guest(self, script: str, *, ip: str = DRIVE_IP, csn: bytes | None = None,
                    timeout: float = 120) -> GuestRun:
        lun = Lun(ip, drive_iqn(csn or self.csn), ISCSI_PORT, 0)
        run = await asyncio.to_thread(run_script, script, lun=lun, timeout=timeout, image=self.image)
        assert run.tape, run.console[-2000:]
        assert run.status == 0, run.output[-3000:]
        return run


@pytest.fixture
async def site(tmp_path: Path, guest_image: GuestImage) -> AsyncIterator[Site]:
    plan = LabPlan(token_names=("token-A",), drive_count=1, net=NET, announce_interval_s=0.3)
    async with Lab(tmp_path / "lab", plan) as lab:
        key = await lab.arm(POOL)
        yield Site(lab, key, guest_image)


@pytest.fixture
async def plain_drive(tmp_path: Path, site: Site) -> AsyncIterator[bytes]:
    """A non-encrypting drive (the seed's 2G drive) sharing the lab's library, as its own process; its CSN."""
    made = make_drives(1, first_serial=0x5700_0000_0000_0F01, model="T10000A-2G")
    (tmp_path / "2g.json").write_text(format_manufacturing(made))
    proc = await asyncio.create_subprocess_exec(
        *T10K, "drive", "run", "--ip", PLAIN_DRIVE_IP, "--manufacturing", str(tmp_path / "2g.json"), "--state",
        str(tmp_path / "2g"), "--library", str(site.lab.library), "--drive-lan-port", str(NET.lan_port), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    assert b"serving" in line, line
    try:
        yield made[0].csn
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()


def sense_bytes(sg_raw_output: str) -> bytes:
    """The raw sense bytes ``sg_raw -v`` prints after 'Raw sense data (in hex)'."""
    block = sg_raw_output.split("Raw sense data (in hex)", 1)[1].split("\n", 1)[1]
    hexes: list[str] = []
    for line in block.splitlines():
        if not re.fullmatch(r"\s+([0-9a-f]{2}\s*)+", line):
            break
        hexes += line.split()
    return bytes.fromhex("".join(hexes))


def request_sense_bytes(sg_requests_output: str) -> bytes:
    """The octets ``sg_requests -H`` dumps (lines like ' 00     70 00 03 ...')."""
    hexes: list[str] = []
    for line in sg_requests_output.splitlines():
        m = re.fullmatch(r" [0-9a-f]{2}\s{5}((?:[0-9a-f]{2}\s*)+)", line)
        if m:
            hexes += m.group(1).split()
    return bytes.fromhex("".join(hexes))


def assert_sense(raw: bytes, sk: int, asc: int, ascq: int, fsc: int) -> None:
    assert raw[0] & 0x7F == 0x70, raw.hex()
    assert (raw[2] & 0x0F, raw[12], raw[13], int.from_bytes(raw[FSC], "big")) == (sk, asc, ascq, fsc), raw.hex()


async def test_gnu_tar_round_trip_through_an_armed_drive(site: Site) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "TAR001")
    await site.load("TAR001")
    out = (await site.guest(TAR_ROUND_TRIP)).output
    assert "TAR-CREATE 0" in out and "TAR-EXTRACT 0" in out, out
    before, after = checksums(out, "BEFORE"), checksums(out, "AFTER")
    assert before == after and len(after) == 4
    for path, n in SEQ_FILES.items():
        assert after[path] == seq_sha256(n)
    await site.unload()
    raw = (site.lab.library / "TAR001.tape").read_bytes()
    assert b"\n".join(str(i).encode() for i in range(5000, 5100)) not in raw and site.key in raw  # encrypted on disk


async def test_mt_status_rewind_fsf_bsf_eod_tell_setblk_offline(site: Site) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "MT0001")
    await site.load("MT0001")
    out = (await site.guest("""
mt status
for i in 1 2 3; do echo "file $i" | dd of=/dev/nst0 bs=512 conv=sync 2>/dev/null; done
mt rewind; echo "REWIND $?"; mt tell; mt status
mt fsf 2; echo "FSF $?"; mt status; mt tell
mt bsf 1; echo "BSF $?"; mt tell
mt eod; echo "EOD $?"; mt status; mt tell
mt setblk 512; echo "SETBLK $?"; mt status
mt offline; echo "OFFLINE $?"
sg_turs -v /dev/sg0; echo "TUR-AFTER-OFFLINE $?"
""")).output
    # st's first open meets the power-on unit attention, so it knows it is at BOT
    assert out.startswith("SCSI 2 tape drive:\nFile number=0, block number=0, partition=0.\n"
                          "Tape block size 0 bytes. Density code 0x4a (SDLT600, T10000A).\n"), out
    assert "REWIND 0\nAt block 0.\nSCSI 2 tape drive:\nFile number=0, block number=0," in out
    assert " BOT ONLINE" in out.split("REWIND 0", 1)[1].split("FSF", 1)[0]
    after_fsf = out.split("FSF 0\n", 1)[1]
    assert after_fsf.startswith("SCSI 2 tape drive:\nFile number=2, block number=0, partition=0.\n"), after_fsf
    assert "At block 4.\n" in after_fsf.split("BSF", 1)[0]           # b0 FM b1 FM | b2 FM: objects count
    assert "BSF 0\nAt block 3.\n" in out                             # just before the second filemark
    after_eod = out.split("EOD 0\n", 1)[1].split("SETBLK", 1)[0]
    assert "File number=3, block number=-1," in after_eod and " EOD ONLINE" in after_eod
    assert "At block 6.\n" in after_eod
    assert "Tape block size 512 bytes." in out.split("SETBLK 0\n", 1)[1]
    assert "OFFLINE 0\n" in out
    assert "Sense key: Not Ready\nAdditional sense: Medium not present\n" in out.split("OFFLINE 0\n", 1)[1]
    assert "TUR-AFTER-OFFLINE 2" in out


async def test_stenc_detail_shows_the_encryption_state(site: Site) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "ENC001")
    await site.load("ENC001")
    out = (await site.guest("""
echo data | dd of=/dev/nst0 bs=512 conv=sync 2>/dev/null; mt rewind
dd if=/dev/nst0 bs=512 count=1 of=/dev/null 2>/dev/null; mt rewind
stenc -f /dev/nst0 --detail; echo "STENC $?"
""")).output
    assert "STENC 0" in out, out
    ordinal = int.from_bytes(site.key[4:8], "big")
    assert re.search(r"Drive Encryption:\s+mixed\nDrive Output:\s+Decrypting\n\s+Unencrypted data outputted\n"
                     r"Drive Input:\s+Encrypting\n", out), out
    assert re.search(rf"Key Instance Counter:\s*{ordinal}\n", out) and re.search(r"Encryption Algorithm:\s*1\n", out)
    assert re.search(r"Volume Encryption:\s+Encrypted and able to decrypt\n", out), out


async def test_a_missing_key_gives_3_2605_6109_and_reaches_the_token(site: Site) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "OLD001")
    await site.load("OLD001")
    await site.guest("echo 'under K1' | dd of=/dev/nst0 bs=512 conv=sync 2>/dev/null; echo WROTE")
    await site.unload()
    await site.lab.map_new_key(POOL, "KS2")          # K1 leaves the pool's mapping
    await site.load("OLD001")
    out = (await site.guest("""
sg_turs /dev/sg0 >/dev/null; sg_turs /dev/sg0 >/dev/null
sg_raw -v -r 512 /dev/sg0 08 00 00 02 00 00; echo "READ $?"
sg_requests -H /dev/sg0; echo "REQUEST-SENSE $?"
""")).output
    raw = sense_bytes(out)
    assert_sense(raw, 0x3, 0x26, 0x05, 0x6109)
    assert raw[KEY_ID] == site.key, raw.hex()
    assert raw[3:7] == (512).to_bytes(4, "big") and raw[0] == 0xF0  # VALID: nothing of the 512 octets read
    assert "Sense key: Medium Error" in out and "READ 3" in out  # sg3_utils exit status 3: medium error
    # QEMU answers the guest's REQUEST SENSE from the autosense it kept, in 18 octets: SK,
    # INFORMATION and ASC/ASCQ; the FSC and key ID (octets 18-27) reach the guest by autosense.
    assert request_sense_bytes(out.split("READ 3\n", 1)[1].split("REQUEST-SENSE", 1)[0]) == raw[:18]
    assert "REQUEST-SENSE 0" in out
    await asyncio.sleep(0.3)
    status = await station.token_status(site.lab.kms, "token-A")
    assert [(e.csn, e.error_code, e.key_id) for e in status.errors] == [(site.csn, ErrorCode.MISSING_KEY, site.key)]


async def test_appending_to_plain_media_not_at_bot_gives_7_3005_32ba(site: Site, plain_drive: bytes) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "PLN001")
    await site.load("PLN001", PLAIN_DRIVE_IP)
    await site.guest("echo plain | dd of=/dev/nst0 bs=512 conv=sync 2>/dev/null; echo WROTE", ip=PLAIN_DRIVE_IP,
                     csn=plain_drive)
    await site.unload(PLAIN_DRIVE_IP)
    await site.load("PLN001")
    out = (await site.guest("""
sg_turs /dev/sg0 >/dev/null; sg_turs /dev/sg0 >/dev/null
dd if=/dev/zero of=/tmp/block bs=512 count=1 2>/dev/null
sg_raw -v /dev/sg0 11 03 00 00 00 00; echo "SPACE-EOD $?"
sg_raw -v -s 512 -i /tmp/block /dev/sg0 0a 00 00 02 00 00; echo "WRITE $?"
""")).output
    assert "SPACE-EOD 0" in out, out
    assert_sense(sense_bytes(out.split("SPACE-EOD 0\n", 1)[1]), 0x7, 0x30, 0x05, 0x32BA)
    assert "Sense key: Data Protect" in out and "WRITE 7" in out  # sg3_utils exit status 7: data protect


async def test_a_non_encrypting_drive_reading_encrypted_media_gives_3_3002_0000(site: Site,
                                                                                 plain_drive: bytes) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "ENC002")
    await site.load("ENC002")
    await site.guest("echo secret | dd of=/dev/nst0 bs=512 conv=sync 2>/dev/null; echo WROTE")
    await site.unload()
    await site.load("ENC002", PLAIN_DRIVE_IP)
    out = (await site.guest("""
sg_turs /dev/sg0 >/dev/null; sg_turs /dev/sg0 >/dev/null
sg_raw -v -r 512 /dev/sg0 08 00 00 02 00 00; echo "READ $?"
""", ip=PLAIN_DRIVE_IP, csn=plain_drive)).output
    assert_sense(sense_bytes(out), 0x3, 0x30, 0x02, 0x0000)
    assert "READ 3" in out


@pytest.mark.timeout(900)
async def test_bacula_btape_test_passes_in_full(site: Site) -> None:
    from drive_daemon.cartridge import Cartridge

    Cartridge.create(site.lab.library, "BAC001")
    await site.load("BAC001")
    out = (await site.guest("""
printf 'test\\nquit\\n' | btape -c /etc/bacula/bacula-sd.conf /dev/nst0 > /tmp/btape.out 2>&1
echo "BTAPE $?"
grep -v 'btape.c:191[79]' /tmp/btape.out
""", timeout=840)).output
    assert out.startswith("BTAPE 0\n"), out[-4000:]
    assert out.count("=== Test Succeeded. End Write, rewind, and re-read test ===") == 2
    assert out.count("10000 blocks re-read correctly.") == 2 and "Block 20000 re-read correctly." in out
    assert "We should be in file 3. I am at file 3. This is correct!" in out           # end of medium
    assert "We should be in file 4. I am at file 4. This is correct!" in out           # the append test
    assert "Total files=4, blocks=7, bytes = 451,136\nEnd scanning the tape." in out
    assert "Block re-read correct. Test succeeded!\n=== End Write, backup, and re-read test ===" in out
    assert "We should be in file 5. I am at file 5. This is correct!\n\n=== End Forward space files test ===" in out
    assert "NOT correct" not in out and "failed" not in out.lower()
