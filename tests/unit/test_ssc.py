"""The SSC device command by command (no sockets): identity, unit attentions, mode pages,
fixed and variable READ/WRITE with ILI and residue, SPACE/LOCATE/READ POSITION, LOAD UNLOAD,
log and security-protocol pages."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drive_daemon.cartridge import Cartridge
from drive_daemon.drive import Drive, Output
from protocol import scsi
from protocol.constants import Asc, NextBlockStatus, ScsiOp, ScsiStatus
from protocol.scsi import data as d
from protocol.scsi import security as sec
from protocol.sense import SenseKey
from tests.scsideck import NEXUS, ScsiDeck
from tests.site import arm, make_site

CSN = bytes.fromhex("5700000000000042")
OTHER = "iqn.2026-11.org.t10k-lab:other,i,0x400001370001"


def _code(s: scsi.SenseData) -> tuple[int, int, int]:
    return s.sense_key, s.asc, s.ascq


@pytest.fixture
def deck(tmp_path: Path) -> ScsiDeck:
    """A non-encrypting drive (no keys needed) with a blank cartridge V1 loaded, attentions cleared."""
    Cartridge.create(tmp_path, "V1")
    deck = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=False), tmp_path)
    deck.session.load("V1")
    deck.clear_attention()
    return deck


def _write(deck: ScsiDeck, *blocks: bytes) -> None:
    for b in blocks:
        deck.ok(scsi.Write6(len(b)), b)


def _position(deck: ScsiDeck) -> int:
    return scsi.ShortPosition.parse(deck.ok(scsi.ReadPosition())).first_block


# --- identity -------------------------------------------------------------------------


def test_inquiry_identity(tmp_path: Path) -> None:
    deck = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=True), tmp_path, model="T10000B")
    raw = deck.ok(scsi.Inquiry(96))  # INQUIRY needs no unit attention cleared
    inq = scsi.InquiryData.parse(raw)
    assert (inq.vendor, inq.product, inq.peripheral, inq.rmb) == ("STK", "T10000B", 0x01, 0x80)
    assert raw[54] & 0x04 and raw[55] & 0x10  # mhVTL's T10000: DPKM and Encrypt
    assert deck.ok(scsi.Inquiry(36)) == raw[:36]
    plain = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=False), tmp_path, model="T10000A-2G")
    raw = plain.ok(scsi.Inquiry(96))
    assert scsi.InquiryData.parse(raw).product == "T10000A" and raw[54] == raw[55] == 0


def test_vpd_pages(deck: ScsiDeck) -> None:
    code, payload = d.parse_vpd_page(deck.ok(scsi.Inquiry(255, evpd=True, page_code=0)))
    assert code == 0 and list(payload) == [0x00, 0x80, 0x83, 0xB0]
    assert d.parse_vpd_page(deck.ok(scsi.Inquiry(255, evpd=True, page_code=0x80)))[1] == CSN.hex().upper().encode()
    designators = d.parse_designators(d.parse_vpd_page(deck.ok(scsi.Inquiry(255, evpd=True, page_code=0x83)))[1])
    assert designators == [(1, b"STK     T10000A         " + CSN.hex().upper().encode()), (2, CSN)]
    assert _code(deck.check(scsi.Inquiry(255, evpd=True, page_code=0x81))) == (5, 0x24, 0)
    assert _code(deck.check(scsi.Inquiry(255, page_code=0x80))) == (5, 0x24, 0)


def test_report_luns_block_limits_density(deck: ScsiDeck) -> None:
    assert d.parse_report_luns(deck.ok(scsi.ReportLuns())) == [0]
    assert scsi.BlockLimits.parse(deck.ok(scsi.ReadBlockLimits())) == scsi.BlockLimits(2 * 1024 * 1024, 1, 0)
    [a] = d.parse_density_support(deck.ok(scsi.ReportDensitySupport()))
    assert (a.primary_density_code, a.flags) == (0x4A, d.DENSITY_WRTOK | d.DENSITY_DEFLT)


def test_t10000b_reports_both_densities(tmp_path: Path) -> None:
    deck = ScsiDeck(None, Drive(CSN, bytes(32)), tmp_path, model="T10000B")
    deck.clear_attention()
    codes = [x.primary_density_code for x in d.parse_density_support(deck.ok(scsi.ReportDensitySupport()))]
    assert codes == [0x4A, 0x4B]


def test_unknown_opcode_and_bad_cdb(deck: ScsiDeck) -> None:
    assert _code(deck.check(_Raw(b"\x2a" + bytes(9)))) == (5, 0x20, 0)  # READ(10): a disk's command
    assert _code(deck.check(_Raw(b"\x2b\x00"))) == (5, 0x24, 0)


class _Raw(scsi.Cdb):
    """Raw CDB bytes (for what the catalogue refuses to build)."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def build(self) -> bytes:
        return self.raw


# --- unit attentions --------------------------------------------------------------------


def test_unit_attention_sequence(tmp_path: Path) -> None:
    Cartridge.create(tmp_path, "V1")
    deck = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=False), tmp_path)
    assert deck.ok(scsi.Inquiry(36))  # INQUIRY and REPORT LUNS pass a pending attention
    assert _code(deck.check(scsi.TestUnitReady())) == (6, 0x29, 0)  # power on, first
    assert _code(deck.check(scsi.TestUnitReady())) == (2, 0x3A, 0)  # then: no cartridge
    assert _code(scsi.SenseData.parse(deck.ok(scsi.RequestSense()))) == (2, 0x3A, 0)
    deck.session.load("V1")  # the operator loads: medium may have changed
    assert _code(deck.check(scsi.TestUnitReady())) == (6, 0x28, 0)
    deck.ok(scsi.TestUnitReady())
    # another nexus has its own power-on attention, then the load's
    assert _code(deck.check(scsi.TestUnitReady(), nexus=OTHER)) == (6, 0x29, 0)
    deck.ok(scsi.TestUnitReady(), nexus=OTHER)
    # a LOAD from one nexus tells the other, not itself
    deck.ok(scsi.LoadUnload(load=False))
    deck.ok(scsi.LoadUnload(load=True))
    deck.ok(scsi.TestUnitReady())
    assert _code(deck.check(scsi.TestUnitReady(), nexus=OTHER)) == (6, 0x28, 0)
    # REQUEST SENSE reports and clears an attention
    deck.device.lun_reset(0.0)
    assert _code(scsi.SenseData.parse(deck.ok(scsi.RequestSense()))) == (6, 0x29, 0x03)
    deck.ok(scsi.TestUnitReady())
    deck.device.power_on()  # the drive's power returned
    assert _code(deck.check(scsi.TestUnitReady())) == (6, 0x29, 0)
    # a lost nexus starts again with power on
    deck.device.nexus_lost(NEXUS)
    assert _code(deck.check(scsi.TestUnitReady())) == (6, 0x29, 0)


# --- mode pages ---------------------------------------------------------------------------


def test_mode_sense_as_linux_st_reads_it(deck: ScsiDeck) -> None:
    raw = deck.ok(scsi.ModeSense6(0, 12))
    assert raw.hex() == "0b" "00" "10" "08" "4a000000" "00" "000000"  # buffered mode 1, density 4Ah, variable
    assert _code(deck.check(scsi.ModeSense6(0x3F, pc=3))) == (5, 0x39, 0)
    everything = scsi.ModeParameters.parse(deck.ok(scsi.ModeSense10(0x3F)), ten=True)
    assert sorted(everything.pages) == [0x0F, 0x10]
    assert everything.pages[0x10][8] & d.DEVICE_CONFIGURATION_BIS


def test_mode_select_sense_round_trip(deck: ScsiDeck) -> None:
    """``mt setblk 512`` then ``mt setblk 0``; the other nexus hears parameters changed."""
    deck.clear_attention(OTHER)
    select = scsi.ModeParameters(density_code=0, block_length=512).build()
    deck.ok(scsi.ModeSelect6(len(select)), select)
    got = scsi.ModeParameters.parse(deck.ok(scsi.ModeSense6(0, 12)))
    assert (got.density_code, got.block_length, got.buffered_mode) == (0x4A, 512, 1)
    assert _code(deck.check(scsi.TestUnitReady(), nexus=OTHER)) == (6, 0x2A, 0x01)
    ten = scsi.ModeParameters(density_code=0x4A, block_length=0).build(ten=True)
    deck.ok(scsi.ModeSelect10(len(ten)), ten)
    assert scsi.ModeParameters.parse(deck.ok(scsi.ModeSense10(0)), ten=True).block_length == 0
    bad = scsi.ModeParameters(density_code=0x42, block_length=0).build()
    assert _code(deck.check(scsi.ModeSelect6(len(bad)), bad)) == (5, 0x26, 0)
    assert _code(deck.check(scsi.ModeSelect6(12), b"\0" * 4)) == (5, 0x1A, 0)


# --- READ and WRITE ---------------------------------------------------------------------------


def test_variable_read_ili_and_residue(deck: ScsiDeck) -> None:
    _write(deck, b"A" * 100, b"B" * 100, b"C" * 100)
    deck.ok(scsi.WriteFilemarks6(1))
    deck.ok(scsi.Rewind())
    assert deck.ok(scsi.Read6(100)) == b"A" * 100  # exact
    short = deck(scsi.Read6(300))  # block shorter than asked: ILI, residue +200
    sense = scsi.SenseData.parse(short.sense)
    assert short.data_in == b"B" * 100 and sense.ili and sense.information == 200 and sense.sense_key == 0
    over = deck(scsi.Read6(40))  # longer: ILI, residue -60, the rest of the block is skipped
    sense = scsi.SenseData.parse(over.sense)
    assert over.data_in == b"C" * 40 and sense.ili and sense.information == -60
    fm = deck.check(scsi.Read6(100))
    assert fm.filemark and (fm.asc, fm.ascq, fm.information) == (0, 1, 100)
    eod = deck.check(scsi.Read6(100))
    assert _code(eod) == (SenseKey.BLANK_CHECK, 0, 5) and eod.information == 100
    deck.ok(scsi.Rewind())
    assert deck.ok(scsi.Read6(500, sili=True)) == b"A" * 100  # SILI: a short block is GOOD


def test_fixed_mode_read_write(deck: ScsiDeck) -> None:
    assert _code(deck.check(scsi.Write6(1, fixed=True), b"x")) == (5, 0x24, 0)  # fixed bit in variable mode
    select = scsi.ModeParameters(density_code=0, block_length=4).build()
    deck.ok(scsi.ModeSelect6(len(select)), select)
    deck.ok(scsi.Write6(3, fixed=True), b"aaaabbbbcccc")
    _write_variable = scsi.ModeParameters(density_code=0, block_length=0).build()
    deck.ok(scsi.ModeSelect6(len(_write_variable)), _write_variable)
    _write(deck, b"dd")  # a 2-octet block
    deck.ok(scsi.WriteFilemarks6(1))
    deck.ok(scsi.ModeSelect6(len(select)), select)
    deck.ok(scsi.Rewind())
    assert deck.ok(scsi.Read6(2, fixed=True)) == b"aaaabbbb"
    wrong = deck(scsi.Read6(3, fixed=True))  # c, then the 2-octet block: ILI, 2 blocks not read
    sense = scsi.SenseData.parse(wrong.sense)
    assert wrong.data_in == b"cccc" and sense.ili and sense.information == 2
    fm = deck(scsi.Read6(5, fixed=True))
    sense = scsi.SenseData.parse(fm.sense)
    assert sense.filemark and sense.information == 5 and fm.data_in == b""
    assert _code(deck.check(scsi.Read6(1, fixed=True, sili=True))) == (5, 0x24, 0)


def test_write_filemarks_zero_flushes_without_writing(deck: ScsiDeck) -> None:
    _write(deck, b"x")
    deck.ok(scsi.WriteFilemarks6(0))
    assert len(deck.session.cartridge) == 1  # type: ignore[arg-type]


# --- positioning -------------------------------------------------------------------------------


def _layout(deck: ScsiDeck) -> None:
    """b0 b1 FM b3 FM b5 b6 (logical objects 0..6)."""
    _write(deck, b"0", b"1")
    deck.ok(scsi.WriteFilemarks6(1))
    _write(deck, b"3")
    deck.ok(scsi.WriteFilemarks6(1))
    _write(deck, b"5", b"6")


def test_space_residues(deck: ScsiDeck) -> None:
    _layout(deck)
    deck.ok(scsi.Rewind())
    fm = deck.check(scsi.Space6(0, 5))  # blocks: stops past the filemark after 2
    assert fm.filemark and fm.information == 3 and _position(deck) == 3
    deck.ok(scsi.Space6(1, 1))
    assert _position(deck) == 5
    back = deck.check(scsi.Space6(0, -3))  # back over nothing but the filemark at 4: stops before it
    assert back.filemark and back.information == -3 and _position(deck) == 4
    bot = deck.check(scsi.Space6(1, -5))  # one filemark back (at 2), then BOT: 4 not done
    assert bot.eom and (bot.asc, bot.ascq, bot.information) == (0, 4, -4) and _position(deck) == 0
    eod = deck.check(scsi.Space16(1, 3))
    assert _code(eod) == (SenseKey.BLANK_CHECK, 0, 5) and eod.information == 1 and _position(deck) == 7
    deck.ok(scsi.Rewind())
    deck.ok(scsi.Space6(3))
    assert _position(deck) == 7
    assert _code(deck.check(scsi.Space6(2, 1))) == (5, 0x24, 0)


def test_locate_and_read_position(deck: ScsiDeck) -> None:
    _layout(deck)
    deck.ok(scsi.Locate10(5))
    assert deck.ok(scsi.Read6(10, sili=True)) == b"5"
    deck.ok(scsi.Locate16(2, dest_type=1))  # file 2 starts after the second filemark
    long = scsi.LongPosition.parse(deck.ok(scsi.ReadPosition(6)))
    assert (long.logical_object_number, long.logical_file_identifier, long.bop) == (5, 2, False)
    past = deck.check(scsi.Locate10(9))
    assert _code(past) == (SenseKey.BLANK_CHECK, 0, 5) and _position(deck) == 7
    deck.ok(scsi.Locate16(0))
    assert scsi.ShortPosition.parse(deck.ok(scsi.ReadPosition())).bop
    assert _code(deck.check(scsi.ReadPosition(8))) == (5, 0x24, 0)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout=st.lists(st.booleans(), min_size=1, max_size=12),
       moves=st.lists(st.tuples(st.sampled_from(["locate", "blocks", "files"]), st.integers(-6, 6)), max_size=8))
def test_space_locate_read_position_agree(tmp_path_factory: pytest.TempPathFactory, layout: list[bool],
                                          moves: list[tuple[str, int]]) -> None:
    """Whatever SPACE and LOCATE do, READ POSITION (short and long) reports where a model
    of the tape says the head is, and LOCATE back to that number lands there again."""
    lib = tmp_path_factory.mktemp("prop")
    Cartridge.create(lib, "P1")
    deck = ScsiDeck(None, Drive(CSN, bytes(32), encrypting=False), lib)
    deck.session.load("P1")
    deck.clear_attention()
    for is_mark in layout:  # True: a filemark
        deck.ok(scsi.WriteFilemarks6(1)) if is_mark else _write(deck, b"b")
    n = len(layout)
    pos = n
    for kind, count in moves:
        if kind == "locate":
            target = abs(count) * 2
            deck(scsi.Locate10(target))
            pos = min(target, n)
        else:
            deck(scsi.Space6(0 if kind == "blocks" else 1, count))
            pos = _model_space(layout, pos, kind == "files", count)
        short = scsi.ShortPosition.parse(deck.ok(scsi.ReadPosition()))
        long = scsi.LongPosition.parse(deck.ok(scsi.ReadPosition(6)))
        assert short.first_block == long.logical_object_number == pos
        assert long.logical_file_identifier == sum(layout[:pos]) and short.bop == (pos == 0)
        deck.ok(scsi.Locate10(0))
        deck.ok(scsi.Locate10(pos)) if pos else None
        assert _position(deck) == pos


def _model_space(layout: list[bool], pos: int, files: bool, count: int) -> int:
    step, left = (1, count) if count > 0 else (-1, -count)
    while left:
        if step > 0:
            if pos >= len(layout):
                break
            mark, pos = layout[pos], pos + 1
        else:
            if pos == 0:
                break
            pos -= 1
            mark = layout[pos]
        if files:
            left -= mark
        elif mark:
            break
        else:
            left -= 1
    return pos


# --- load, unload, prevent, erase ----------------------------------------------------------------


def test_unload_then_not_ready_until_load(deck: ScsiDeck) -> None:
    _write(deck, b"kept")
    deck.ok(scsi.PreventAllowMediumRemoval(1))
    assert _code(deck.check(scsi.LoadUnload(load=False))) == (5, 0x53, 0x02)
    deck.ok(scsi.PreventAllowMediumRemoval(0))
    deck.ok(scsi.LoadUnload(load=False))
    for cdb in (scsi.TestUnitReady(), scsi.Read6(10), scsi.ReadPosition(), scsi.Rewind()):
        assert _code(deck.check(cdb)) == (2, 0x3A, 0)
    deck.ok(scsi.LoadUnload(load=True))  # the cartridge still in the drive is threaded again
    assert _position(deck) == 0 and deck.ok(scsi.Read6(4)) == b"kept"
    deck.session.remove(Output())
    assert _code(deck.check(scsi.LoadUnload(load=True))) == (2, 0x3A, 0)


def test_erase_from_position(deck: ScsiDeck) -> None:
    _layout(deck)
    deck.ok(scsi.Locate10(3))
    deck.ok(scsi.Erase6())
    assert len(deck.session.cartridge) == 3  # type: ignore[arg-type]


# --- log and security pages -----------------------------------------------------------------------


def test_log_sense_pages(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    arm(site)
    lib = tmp_path / "lib"
    Cartridge.create(lib, "E1")
    deck = ScsiDeck.on(site, site.ip(0), lib)
    deck.session.load("E1")
    deck.clear_attention()
    code, params = d.parse_log_page(deck.ok(scsi.LogSense(0)))
    assert code == 0 and list(params) == [0x00, 0x2E]
    _write(deck, b"x")
    deck.ok(scsi.Rewind())
    site.drive(0).vop_reset()  # no keys: reads fail with 4/2681/343c
    assert str(deck.check(scsi.Read6(1)).seed) == "4/2681/343c"
    assert d.parse_tape_alert(d.parse_log_page(deck.ok(scsi.LogSense(0x2E)))[1]) == {d.TAPE_ALERT_READ_FAILURE}
    assert d.parse_tape_alert(d.parse_log_page(deck.ok(scsi.LogSense(0x2E)))[1]) == set()  # cleared when read
    assert _code(deck.check(scsi.LogSense(0x31))) == (5, 0x24, 0)


def test_report_supported_operation_codes(deck: ScsiDeck) -> None:
    listed = d.parse_all_commands(deck.ok(scsi.ReportSupportedOperationCodes()))
    assert {op for op, _, _ in listed} == set(ScsiOp)
    assert (0xA3, 0x0C, 12) in listed and (0x08, None, 6) in listed
    one = deck.ok(scsi.ReportSupportedOperationCodes(reporting_options=1, requested_opcode=0x08))
    assert one[:4].hex() == "00030006" and one[4] == 0x08
    assert deck.ok(scsi.ReportSupportedOperationCodes(reporting_options=1, requested_opcode=0x2A))[1] == 1


def test_security_protocol_in_pages(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    key = arm(site)
    lib = tmp_path / "lib"
    Cartridge.create(lib, "E1")
    deck = ScsiDeck.on(site, site.ip(0), lib)
    deck.session.load("E1")
    deck.clear_attention()
    protocols = deck.ok(scsi.SecurityProtocolIn(0, 0))
    assert sec.SUPPORTED_PROTOCOLS.parse(protocols).protocols == [0x00, 0x20]
    code, body = sec.parse_tde_page(deck.ok(scsi.SecurityProtocolIn(0x20, 0x0000)))
    assert [int.from_bytes(body[i:i + 2], "big") for i in range(0, len(body), 2)] == [0, 1, 0x10, 0x11, 0x20, 0x21]
    status = sec.DataEncryptionStatus.parse(deck.ok(scsi.SecurityProtocolIn(0x20, 0x20)))
    assert (status.encryption_mode, status.decryption_mode, status.key_id) == (2, 3, key)
    _write(deck, b"secret")
    deck.ok(scsi.Rewind())
    nb = sec.NextBlockEncryptionStatus.parse(deck.ok(scsi.SecurityProtocolIn(0x20, 0x21)))
    assert (nb.logical_object_number, nb.encryption_status, nb.key_id) == (0, NextBlockStatus.ENCRYPTED, key)
    caps = sec.CAPABILITIES.parse(sec.parse_tde_page(deck.ok(scsi.SecurityProtocolIn(0x20, 0x10)))[1])
    assert caps.flags4 == sec.CFG_P_PREVENTED and caps.algorithms[0].descriptor.algorithm == 0x00010014
    assert _code(deck.check(scsi.SecurityProtocolIn(0x20, 0x30))) == (5, 0x24, 0)
    site.drive(0).power_cycle()  # media keys gone: the drive cannot encrypt
    status = sec.DataEncryptionStatus.parse(deck.ok(scsi.SecurityProtocolIn(0x20, 0x20)))
    assert (status.encryption_mode, status.key_id) == (0, None)


def test_security_protocol_out_is_refused(deck: ScsiDeck) -> None:
    """stenc would send a Set Data Encryption page: keys come only from the token."""
    page = sec.tde_page(sec.TDE_SET_DATA_ENCRYPTION, bytes(48))
    sense = deck.check(scsi.SecurityProtocolOut(0x20, 0x10, len(page)), page)
    assert _code(sense) == (SenseKey.ILLEGAL_REQUEST, 0x74, 0x71)
    assert Asc(sense.asc_ascq) is Asc.LOGICAL_UNIT_ACCESS_NOT_AUTHORIZED
    assert deck(scsi.SecurityProtocolOut(0x20, 0x10, 0)).status == ScsiStatus.CHECK_CONDITION

