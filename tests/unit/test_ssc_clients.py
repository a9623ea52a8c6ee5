"""The command sequences real clients send first (REAL-CLIENTS.md, traced against tgt)."""

from __future__ import annotations

from pathlib import Path

from drive_daemon.cartridge import Cartridge
from drive_daemon.drive import Drive
from protocol import scsi
from protocol.constants import NextBlockStatus
from protocol.scsi import security as sec
from tests.scsideck import ScsiDeck
from tests.unit.test_ssc import CSN, _code, _position


def test_what_qemu_and_linux_st_send(tmp_path: Path) -> None:
    """QEMU opening the LUN, then st's open, `mt setblk`, a tar write, `mt tell`, `mt eod`,
    `mt offline`: every step as those clients expect it."""
    Cartridge.create(tmp_path, "TAR001")
    deck = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=False), tmp_path)
    deck.session.load("TAR001")
    assert _code(deck.check(scsi.TestUnitReady())) == (6, 0x29, 0)  # QEMU expects the power-on attention
    for n in (64, 68, 36):
        assert len(deck.ok(scsi.Inquiry(n))) == n
    deck.ok(scsi.ModeSense6(0x3F))
    for page in (0x00, 0x80, 0x83):
        deck.ok(scsi.Inquiry(255, evpd=True, page_code=page))
    deck.ok(scsi.TestUnitReady())  # st's open (the load before power on needs no 28h/00h)
    deck.ok(scsi.ReadBlockLimits())
    mode = scsi.ModeParameters.parse(deck.ok(scsi.ModeSense6(0, 12)))
    deck.ok(scsi.Rewind())
    setblk = scsi.ModeParameters(buffered_mode=mode.buffered_mode, density_code=mode.density_code,
                                 block_length=0).build()
    deck.ok(scsi.ModeSelect6(len(setblk)), setblk)
    for _ in range(3):
        deck.ok(scsi.Write6(32768), bytes(32768))
    deck.ok(scsi.WriteFilemarks6(1))
    assert scsi.ShortPosition.parse(deck.ok(scsi.ReadPosition(0, 20))).first_block == 4  # mt tell
    deck.ok(scsi.Rewind())
    deck.ok(scsi.Space6(1, 1))  # mt fsf
    deck.ok(scsi.Space6(3))  # mt eod
    assert _position(deck) == 4
    deck.ok(scsi.PreventAllowMediumRemoval(0))
    deck.ok(scsi.LoadUnload(load=False))  # mt offline
    assert _code(deck.check(scsi.TestUnitReady())) == (2, 0x3A, 0)


def test_what_stenc_sends(tmp_path: Path) -> None:
    """stenc --detail: INQUIRY 96, then SECURITY PROTOCOL IN 20h pages 0020h and 0021h."""
    Cartridge.create(tmp_path, "ST1")
    deck = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=False), tmp_path)
    deck.session.load("ST1")
    deck.clear_attention()
    assert scsi.InquiryData.parse(deck.ok(scsi.Inquiry(96))).vendor == "STK"
    status = sec.DataEncryptionStatus.parse(deck.ok(scsi.SecurityProtocolIn(0x20, 0x20, 8192)))
    assert (status.encryption_mode, status.decryption_mode) == (0, 0)  # a non-encrypting drive
    nb = sec.NextBlockEncryptionStatus.parse(deck.ok(scsi.SecurityProtocolIn(0x20, 0x21, 8192)))
    assert nb.encryption_status == NextBlockStatus.UNKNOWN  # blank tape: end of data
