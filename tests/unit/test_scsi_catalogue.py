"""protocol/scsi: every CDB and page, built and parsed both ways against bytes written out by hand."""

from __future__ import annotations

import pytest

from protocol import scsi
from protocol.constants import ScsiOp
from protocol.scsi import data, security

CDBS = [
    pytest.param("000000000000", scsi.TestUnitReady(), id="TEST_UNIT_READY"),
    pytest.param("010100000000", scsi.Rewind(immed=True), id="REWIND"),
    pytest.param("0300000012" "00", scsi.RequestSense(18), id="REQUEST_SENSE"),
    pytest.param("050000000000", scsi.ReadBlockLimits(), id="READ_BLOCK_LIMITS"),
    pytest.param("080201000000", scsi.Read6(65536, sili=True), id="READ_6_variable_sili"),
    pytest.param("080100000400", scsi.Read6(4, fixed=True), id="READ_6_fixed"),
    pytest.param("0a0000800000", scsi.Write6(32768), id="WRITE_6"),
    pytest.param("100000000100", scsi.WriteFilemarks6(1), id="WRITE_FILEMARKS_6"),
    pytest.param("1101fffffe00", scsi.Space6(1, -2), id="SPACE_6_back_2_filemarks"),
    pytest.param("110300000000", scsi.Space6(3), id="SPACE_6_eod"),
    pytest.param("120183006000", scsi.Inquiry(96, evpd=True, page_code=0x83), id="INQUIRY_VPD83"),
    pytest.param("15100000" "0c00", scsi.ModeSelect6(12), id="MODE_SELECT_6"),
    pytest.param("190100000000", scsi.Erase6(long=True), id="ERASE_6"),
    pytest.param("1a003f00ff00", scsi.ModeSense6(), id="MODE_SENSE_6_all"),
    pytest.param("1a0800000c00", scsi.ModeSense6(0, 12, dbd=True), id="MODE_SENSE_6_dbd"),
    pytest.param("1b0000000100", scsi.LoadUnload(load=True), id="LOAD"),
    pytest.param("1e0000000100", scsi.PreventAllowMediumRemoval(1), id="PREVENT"),
    pytest.param("2b000000000007000000", scsi.Locate10(7), id="LOCATE_10"),
    pytest.param("34060000000000002000", scsi.ReadPosition(6, 32), id="READ_POSITION_long"),
    pytest.param("440100000000000fff00" .replace("0fff", "0fff"), scsi.ReportDensitySupport(0x0FFF, media=True),
                 id="REPORT_DENSITY_SUPPORT"),
    pytest.param("4d006e000000000fff00", scsi.LogSense(0x2E, 0x0FFF), id="LOG_SENSE_2E"),
    pytest.param("55100000000000001c00", scsi.ModeSelect10(28), id="MODE_SELECT_10"),
    pytest.param("5a003f0000000000ff00", scsi.ModeSense10(allocation_length=255), id="MODE_SENSE_10"),
    pytest.param("91010000fffffffffffffffe00000000", scsi.Space16(1, -2), id="SPACE_16"),
    pytest.param("92000000000000000000000500000000", scsi.Locate16(5), id="LOCATE_16"),
    pytest.param("a0000000000000001000" "0000", scsi.ReportLuns(4096), id="REPORT_LUNS"),
    pytest.param("a2200020000000000200" "0000", scsi.SecurityProtocolIn(0x20, 0x20, 0x200), id="SPIN"),
    pytest.param("b5200010000000000034" "0000", scsi.SecurityProtocolOut(0x20, 0x10, 0x34), id="SPOUT"),
    pytest.param("a30c00000000000020000000", scsi.ReportSupportedOperationCodes(), id="RSOC_all"),
    pytest.param("a30c01080000000020000000", scsi.ReportSupportedOperationCodes(reporting_options=1,
                                                                                requested_opcode=8), id="RSOC_one"),
]


@pytest.mark.parametrize(("hexa", "value"), CDBS)
def test_cdb_round_trip(hexa: str, value: scsi.Cdb) -> None:
    assert value.build().hex() == hexa
    assert scsi.decode_cdb(bytes.fromhex(hexa) + bytes(16 - len(hexa) // 2)) == value


def test_every_opcode_has_a_cdb() -> None:
    assert set(scsi.CDB_CLASSES) == set(ScsiOp)


def test_unknown_and_short_cdbs() -> None:
    with pytest.raises(scsi.UnknownOpcode):
        scsi.decode_cdb(bytes.fromhex("2a00000000000000000000"))
    with pytest.raises(scsi.ScsiFormatError):
        scsi.decode_cdb(bytes.fromhex("2b0000"))


def test_sense_layout() -> None:
    key = bytes.fromhex("0000000100000007")
    s = scsi.SenseData(3, 0x26, 0x05, 0x6109, key, information=1)
    raw = s.build()
    assert raw.hex() == "f000030000000114" "00000000" "2605" "00000000" "6109" "0000000100000007"
    assert raw[scsi.FSC_OFFSET:scsi.FSC_OFFSET + 2] == b"\x61\x09"
    assert raw[scsi.KEY_ID_OFFSET:scsi.KEY_ID_OFFSET + 8] == key
    assert scsi.SenseData.parse(raw) == s and str(s.seed) == "3/2605/6109"
    overlength = scsi.SenseData(0, ili=True, information=-100).build()
    assert overlength[:7].hex() == "f00020ffffff9c"
    assert scsi.SenseData.parse(overlength[:18]).information == -100


def test_inquiry_and_vpd() -> None:
    inq = scsi.InquiryData("STK", "T10000B", "1.0", vendor_specific=bytes(18) + b"\x04\x10")
    raw = inq.build()
    assert len(raw) == 96 and raw[:5].hex() == "018005025b"
    assert raw[8:36] == b"STK     T10000B         1.0 " and raw[54:56] == b"\x04\x10"
    assert scsi.InquiryData.parse(raw[:36]).product == "T10000B"
    page = data.vpd_page(0x83, data.designator(data.CODE_SET_BINARY, data.DESIGNATOR_EUI64, b"\x57" + bytes(7)))
    assert page.hex() == "0183000c" "01020008" "5700000000000000"
    code, payload = data.parse_vpd_page(page)
    assert code == 0x83 and data.parse_designators(payload) == [(2, b"\x57" + bytes(7))]


def test_mode_data_both_headers() -> None:
    m = scsi.ModeParameters(density_code=0x4A, block_length=512)
    assert m.build().hex() == "0b0010084a00000000000200"
    assert m.build(ten=True).hex() == "000e00100000" "0008" "4a00000000000200"
    assert scsi.ModeParameters.parse(m.build(ten=True), ten=True) == m
    with pytest.raises(scsi.ScsiFormatError):
        scsi.ModeParameters.parse(bytes.fromhex("0b001010"))


def test_positions_limits_luns_density() -> None:
    assert scsi.ShortPosition(0, 0, bop=True).build().hex() == "80" + "00" * 19
    assert scsi.ShortPosition.parse(scsi.ShortPosition(9, 9).build()) == scsi.ShortPosition(9, 9)
    long = scsi.LongPosition(9, 2, eop=True)
    assert len(long.build()) == 32 and scsi.LongPosition.parse(long.build()) == long
    assert scsi.BlockLimits(2 * 1024 * 1024).build().hex() == "002000000001"
    assert data.parse_report_luns(data.report_luns([0])) == [0]
    d = scsi.DensityDescriptor(0x4A, 0x4A, 0xA0, 0, 127, 768, 500_000, "STK", "T1-500", "T10000A 500 GB")
    assert data.parse_density_support(data.density_support([d, d])) == [d, d]


def test_security_pages() -> None:
    key = bytes.fromhex("0000000100000007")
    st = security.DataEncryptionStatus(2, 3, 1, 7, key)
    raw = st.build()
    assert raw[:8].hex() == "0020002000020301" and raw[24:28].hex() == "00010008" and raw[28:] == key
    assert security.DataEncryptionStatus.parse(raw) == st
    nb = security.NextBlockEncryptionStatus(4, 6, 1, key)
    assert security.NextBlockEncryptionStatus.parse(nb.build()) == nb
    assert security.supported_protocols([0, 0x20]).hex() == "000000000000" "0002" "0020"
