"""Target and initiator connections joined in memory: what one sends, the other decodes."""

from __future__ import annotations

import dataclasses

import pytest

from drive_daemon.iscsi import IscsiConfig
from host.iscsi_initiator import (
    CommandComplete,
    LoginComplete,
    LogoutComplete,
    NopComplete,
    Rejected,
    TextComplete,
    TmfComplete,
)
from protocol.iscsi import (
    R2T,
    DataIn,
    DataOut,
    IscsiError,
    NopIn,
    NopOut,
    PduReader,
    Reject,
    RejectReason,
    ScsiCommand,
    TmfFunction,
    TmfResult,
    decode_bhs,
    encode_pdu_bytes,
)

from .pair import TARGET, Pair

BLOCK = bytes(range(256)) * 1024  # 256 KiB
WRITE6 = bytes([0x0A, 0, 0x04, 0, 0, 0])
READ6 = bytes([0x08, 0, 0x04, 0, 0, 0])
REWIND = bytes([0x01, 0, 0, 0, 0, 0])
TUR = bytes(6)


def pdus(raw: bytes, *, digests: bool = False) -> list:
    reader = PduReader(max_data_segment=1 << 24, header_digest=digests, data_digest=digests)
    reader.feed(raw)
    out = []
    while (p := reader.next_pdu()) is not None:
        out.append(p)
    return out


def command(pair: Pair, cdb: bytes, **kw) -> CommandComplete:
    itt = pair.initiator.send_command(cdb, **kw)
    events = pair.pump()
    done = [e for e in events if isinstance(e, CommandComplete) and e.itt == itt]
    assert len(done) == 1, events
    return done[0]


def ready(pair: Pair) -> None:
    assert [type(e) for e in pair.login()] == [LoginComplete]
    assert command(pair, TUR).reply.status == 2  # the power-on unit attention
    assert command(pair, TUR).reply.status == 0


@pytest.mark.parametrize("fragment", [0, 1, 7, 1000])
@pytest.mark.parametrize("digests", [False, True])
def test_login_write_read_in_fragments(fragment: int, digests: bool) -> None:
    pair = Pair(fragment=fragment, digests=digests)
    events = pair.login()
    assert isinstance(events[0], LoginComplete)
    assert events[0].params.header_digest is digests and events[0].params.data_digest is digests
    assert pair.target.params == dataclasses.replace(events[0].params)
    command(pair, TUR)
    block = BLOCK[:4099] if fragment == 1 else BLOCK
    cdb = bytes([0x0A, 0]) + len(block).to_bytes(3, "big") + b"\0"
    assert command(pair, cdb, data_out=block).reply.status == 0
    command(pair, REWIND)
    reply = command(pair, bytes([0x08, 0]) + len(block).to_bytes(3, "big") + b"\0", expected_in=len(block)).reply
    assert (reply.status, reply.data, reply.residual) == (0, block, 0)
    assert pair.lun.blocks == [block]
    assert not pair.target.errors


def test_negotiated_defaults_between_our_two_sides() -> None:
    pair = Pair()
    params = pair.login()[0].params
    assert (params.initial_r2t, params.immediate_data, params.first_burst, params.max_burst) == (False, True, 262144,
                                                                                                 16776192)
    assert (params.initiator_max_recv, params.target_max_recv, params.max_outstanding_r2t) == (262144, 262144, 1)
    assert (params.error_recovery_level, params.max_connections) == (0, 1)


def test_discovery_lists_the_target_and_refuses_scsi() -> None:
    pair = Pair(discovery=True)
    pair.login()
    itt = pair.initiator.send_text([("SendTargets", "All")])
    (event,) = pair.pump()
    assert event == TextComplete(itt, [("TargetName", TARGET), ("TargetAddress", "127.0.0.9:3260,1")])
    answer = pdus(pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=9, cmdsn=pair.initiator.cmdsn, cdb=bytes(16)))))
    assert isinstance(answer[0], Reject) and answer[0].reason == RejectReason.PROTOCOL_ERROR
    assert pair.target.errors["SCSI_IN_DISCOVERY"] == 1


def test_wrong_target_name_is_not_found() -> None:
    pair = Pair()
    pair.initiator.target = "iqn.2026-11.org.t10k-lab:t10000.ffff"
    with pytest.raises(IscsiError, match="not found"):
        pair.login()
    assert pair.target.closing


CHAP = ("host", "secret-of-12-bytes")


def test_chap_right() -> None:
    pair = Pair(config=IscsiConfig(target_name=TARGET, chap=CHAP), chap=CHAP)
    ready(pair)


def test_mutual_chap_right() -> None:
    config = IscsiConfig(target_name=TARGET, chap=CHAP, mutual_chap=("drive", "drive-secret-1234"))
    pair = Pair(config=config, chap=CHAP, mutual_chap=("drive", "drive-secret-1234"))
    ready(pair)


def test_mutual_chap_wrong_target_secret_is_refused_by_the_initiator() -> None:
    config = IscsiConfig(target_name=TARGET, chap=CHAP, mutual_chap=("drive", "another-secret-99"))
    pair = Pair(config=config, chap=CHAP, mutual_chap=("drive", "drive-secret-1234"))
    with pytest.raises(IscsiError, match="mutual CHAP"):
        pair.login()


@pytest.mark.parametrize("given", [("host", "wrong-secret-1234"), ("nobody", CHAP[1]), None])
def test_chap_wrong_or_missing_is_refused(given) -> None:
    pair = Pair(config=IscsiConfig(target_name=TARGET, chap=CHAP), chap=given)
    with pytest.raises(IscsiError, match="authentication failure"):
        pair.login()
    assert pair.target.closing
    assert pair.target.errors["LOGIN_AUTHENTICATION_FAILURE"] == 1
    assert pair.lun.calls == []


def test_r2t_flow_with_small_bursts() -> None:
    config = IscsiConfig(target_name=TARGET, max_burst=4096, first_burst=1024, initial_r2t=True,
                         max_outstanding_r2t=2, max_recv_data_segment=1024)
    offer = {"MaxBurstLength": "16776192", "FirstBurstLength": "262144", "InitialR2T": "No",
             "ImmediateData": "Yes", "MaxOutstandingR2T": "4", "MaxRecvDataSegmentLength": "262144"}
    pair = Pair(config=config, offer=offer)
    params = pair.login()[0].params
    assert (params.max_burst, params.first_burst, params.initial_r2t, params.max_outstanding_r2t) == (4096, 1024,
                                                                                                      True, 2)
    command(pair, TUR)
    block = BLOCK[:20000]
    before = len(pair.to_target)
    assert command(pair, bytes([0x0A, 0]) + len(block).to_bytes(3, "big") + b"\0", data_out=block).reply.status == 0
    assert pair.lun.blocks == [block]
    sent = pdus(b"".join(pair.to_target[before:]))
    assert len(sent[0].data) == 1024  # immediate data, up to FirstBurstLength
    outs = [p for p in sent if isinstance(p, DataOut)]
    assert all(len(p.data) <= 1024 for p in outs)
    assert sum(len(p.data) for p in outs) == len(block) - 1024
    assert len({p.ttt for p in outs}) == 5  # 19 KiB in bursts of at most 4 KiB


def test_read_split_by_the_initiators_segment_length() -> None:
    offer = {"MaxRecvDataSegmentLength": "4096", "MaxBurstLength": "16384"}
    pair = Pair(offer=offer)
    pair.login()
    command(pair, TUR)
    command(pair, WRITE6, data_out=BLOCK)
    command(pair, REWIND)
    pair.initiator.send_command(READ6, expected_in=len(BLOCK))
    wire = b"".join(bytes(p) for p in pair.initiator.data_to_send())
    raw = pair.send_raw(wire)
    got = pdus(raw)
    assert all(isinstance(p, DataIn) and len(p.data) <= 4096 for p in got)
    assert [p.datasn for p in got] == list(range(64))
    assert [p.final for p in got].count(True) == len(BLOCK) // 16384
    assert got[-1].has_status and not any(p.has_status for p in got[:-1])
    assert b"".join(bytes(p.data) for p in got) == BLOCK


def test_residual_underflow_and_overflow() -> None:
    pair = Pair()
    ready(pair)
    reply = command(pair, bytes([0x12, 0, 0, 0, 200, 0]), expected_in=200).reply
    assert (reply.status, len(reply.data), reply.residual) == (0, 36, 164)
    reply = command(pair, bytes([0x12, 0, 0, 0, 36, 0]), expected_in=8).reply  # the LUN returns more than asked
    assert (len(reply.data), reply.residual) == (8, -28)


def test_check_condition_with_autosense_and_data() -> None:
    pair = Pair()
    ready(pair)
    command(pair, WRITE6, data_out=BLOCK)
    command(pair, REWIND)
    reply = command(pair, bytes([0x08, 0, 0, 1, 0, 0]), expected_in=256).reply  # a short read: ILI
    assert reply.status == 2 and reply.sense[0] == 0xF0 and reply.sense[2] & 0x20
    assert reply.data == BLOCK[:256]
    reply = command(pair, READ6, expected_in=len(BLOCK)).reply  # end of data
    assert (reply.status, reply.sense[2] & 0xF, reply.data, reply.residual) == (2, 8, b"", len(BLOCK))


def test_out_of_window_commands_are_dropped_and_counted() -> None:
    pair = Pair()
    ready(pair)
    ahead = pair.target.maxcmdsn + 1
    assert pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=77, cmdsn=ahead, cdb=bytes(16)))) == b""
    assert pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=78, cmdsn=(pair.target.expcmdsn - 5) & 0xFFFFFFFF, cdb=bytes(16)))) == b""
    assert pair.target.errors["CMDSN_OUT_OF_WINDOW"] == 2
    assert command(pair, TUR).reply.status == 0  # the session goes on


def test_commands_reach_the_lun_in_cmdsn_order() -> None:
    pair = Pair()
    ready(pair)
    sn = pair.initiator.cmdsn
    second = encode_pdu_bytes(ScsiCommand(itt=51, cmdsn=sn + 1, cdb=bytes(16)))
    first = encode_pdu_bytes(ScsiCommand(itt=50, cmdsn=sn, read=True, expected_length=36,
                                         cdb=bytes([0x12, 0, 0, 0, 36, 0]).ljust(16, b"\0")))
    assert pair.send_raw(second) == b""  # held until CmdSN sn arrives
    got = pdus(pair.send_raw(first))
    assert [p.itt for p in got] == [50, 51]
    assert [c[1][0] for c in pair.lun.calls[-2:]] == [0x12, 0x00]


def test_a_write_waiting_for_data_holds_later_commands() -> None:
    config = IscsiConfig(target_name=TARGET, initial_r2t=True, immediate_data=False)
    pair = Pair(config=config)
    ready(pair)
    sn = pair.initiator.cmdsn
    r2t = pdus(pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=60, cmdsn=sn, write=True, expected_length=100,
                                                          cdb=bytes([0x0A, 0, 0, 0, 100, 0]).ljust(16, b"\0")))))
    assert isinstance(r2t[0], R2T) and (r2t[0].offset, r2t[0].length) == (0, 100)
    assert pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=61, cmdsn=sn + 1, cdb=bytes(16)))) == b""
    got = pdus(pair.send_raw(encode_pdu_bytes(DataOut(final=True, itt=60, ttt=r2t[0].ttt, data=bytes(100)))))
    assert [p.itt for p in got] == [60, 61]
    assert pair.lun.blocks == [bytes(100)]


def test_abort_task_and_lun_reset() -> None:
    config = IscsiConfig(target_name=TARGET, initial_r2t=True, immediate_data=False)
    pair = Pair(config=config)
    ready(pair)
    sn = pair.initiator.cmdsn
    pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=70, cmdsn=sn, write=True, expected_length=100,
                                               cdb=bytes([0x0A, 0, 0, 0, 100, 0]).ljust(16, b"\0"))))
    pair.initiator.cmdsn = sn + 1
    itt = pair.initiator.send_tmf(TmfFunction.ABORT_TASK, referenced_tag=70)
    assert pair.pump() == [TmfComplete(itt, TmfResult.FUNCTION_COMPLETE)]
    assert pair.lun.blocks == []
    itt = pair.initiator.send_tmf(TmfFunction.ABORT_TASK, referenced_tag=70)
    assert pair.pump() == [TmfComplete(itt, TmfResult.TASK_DOES_NOT_EXIST)]
    assert command(pair, TUR).reply.status == 0  # the window moved on past the aborted command
    itt = pair.initiator.send_tmf(TmfFunction.LOGICAL_UNIT_RESET)
    assert pair.pump() == [TmfComplete(itt, TmfResult.FUNCTION_COMPLETE)]
    assert pair.lun.resets == 1
    assert command(pair, TUR).reply.sense[12] == 0x29  # the LUN's unit attention after its reset
    itt = pair.initiator.send_tmf(TmfFunction.TARGET_WARM_RESET)
    assert pair.pump() == [TmfComplete(itt, TmfResult.FUNCTION_COMPLETE)]
    assert pair.lun.resets == 2
    itt = pair.initiator.send_tmf(TmfFunction.CLEAR_ACA)
    assert pair.pump() == [TmfComplete(itt, TmfResult.NOT_SUPPORTED)]


def test_nop_both_ways() -> None:
    pair = Pair()
    pair.login()
    itt = pair.initiator.send_nop(b"ping-data")
    assert pair.pump() == [NopComplete(itt, b"ping-data")]
    assert pair.target.ping(pair.now)
    assert not pair.target.ping(pair.now)  # still unanswered
    raw = b"".join(bytes(p) for p in pair.target.data_to_send())
    assert isinstance(pdus(raw)[0], NopIn)
    pair.initiator.receive_data(raw)
    assert pair.initiator.next_event() is None
    answer = pdus(b"".join(bytes(p) for p in pair.initiator.data_to_send()))
    assert isinstance(answer[0], NopOut) and answer[0].ttt == pdus(raw)[0].ttt
    pair.send_raw(encode_pdu_bytes(answer[0]))
    assert pair.target.ping(pair.now)  # answered: a new ping may go


def test_logout_ends_the_nexus() -> None:
    pair = Pair()
    ready(pair)
    itt = pair.initiator.send_logout()
    assert pair.pump() == [LogoutComplete(itt, 0)]
    assert pair.target.closing and pair.lun.lost == [pair.lun.calls[0][0]]
    assert pair.lun.calls[0][0].startswith("iqn.test:init,i,0x80")


def test_other_luns_do_not_exist() -> None:
    pair = Pair()
    ready(pair)
    reply = command(pair, bytes([0x12, 0, 0, 0, 36, 0]), expected_in=36, lun=3).reply
    assert reply.data[0] == 0x7F
    reply = command(pair, TUR, lun=3).reply
    assert reply.status == 2 and reply.sense[12] == 0x25


# --- malformed input -------------------------------------------------------------------------

def test_unknown_opcode_is_rejected_and_service_goes_on() -> None:
    pair = Pair()
    ready(pair)
    bad = bytearray(encode_pdu_bytes(NopOut(itt=5, cmdsn=pair.initiator.cmdsn)))
    bad[0] = 0x1D
    (reject,) = pdus(pair.send_raw(bytes(bad)))
    assert reject.reason == RejectReason.COMMAND_NOT_SUPPORTED and bytes(reject.data) == bytes(bad)
    assert pair.target.errors["UNKNOWN_OPCODE"] == 1 and not pair.target.closing
    assert command(pair, TUR).reply.status == 0


def test_rejected_event_on_the_initiator() -> None:
    pair = Pair()
    ready(pair)
    itt = pair.initiator.send_command(bytes(6), data_out=b"")  # a write of nothing: fine
    pair.pump()
    raw = encode_pdu_bytes(ScsiCommand(itt=itt + 100, cmdsn=pair.initiator.cmdsn, read=True, write=True,
                                       expected_length=4, cdb=bytes(16)))
    (reject,) = pdus(pair.send_raw(raw))
    pair.initiator.receive_data(encode_pdu_bytes(reject))
    assert pair.initiator.next_event() == Rejected(itt + 100, RejectReason.COMMAND_NOT_SUPPORTED)


def test_data_digest_error_rejects_then_drops_a_command() -> None:
    pair = Pair(digests=True)
    ready(pair)
    wire = bytearray(encode_pdu_bytes(ScsiCommand(itt=90, cmdsn=pair.initiator.cmdsn, write=True, expected_length=8,
                                                  cdb=bytes([0x0A, 0, 0, 0, 8, 0]).ljust(16, b"\0"), data=b"12345678"),
                                      header_digest=True, data_digest=True))
    wire[52] ^= 0xFF
    (reject,) = pdus(pair.send_raw(bytes(wire)), digests=True)
    assert reject.reason == RejectReason.DATA_DIGEST_ERROR
    assert pair.target.closing and pair.target.errors["DATA_DIGEST"] == 1


def test_header_digest_error_drops_the_connection() -> None:
    pair = Pair(digests=True)
    ready(pair)
    wire = bytearray(encode_pdu_bytes(NopOut(itt=5, cmdsn=pair.initiator.cmdsn), header_digest=True))
    wire[20] ^= 1
    assert pair.send_raw(bytes(wire)) == b""
    assert pair.target.closing and pair.target.errors["HEADER_DIGEST"] == 1


def test_oversized_data_segment_drops_the_connection() -> None:
    pair = Pair()
    ready(pair)
    header = bytearray(encode_pdu_bytes(NopOut(itt=5, cmdsn=pair.initiator.cmdsn, data=b"x")))[:48]
    header[5:8] = (15 << 20).to_bytes(3, "big")
    (reject,) = pdus(pair.send_raw(bytes(header)))
    assert reject.reason == RejectReason.PROTOCOL_ERROR
    assert pair.target.closing and pair.target.errors["TOO_LARGE"] == 1


def test_anything_before_login_drops_the_connection() -> None:
    pair = Pair()
    assert pair.send_raw(encode_pdu_bytes(ScsiCommand(itt=1, cmdsn=1, cdb=bytes(16)))) == b""
    assert pair.target.closing and pair.target.errors["NOT_LOGGED_IN"] == 1
    assert pair.lun.calls == []


def test_garbage_login_text_is_an_initiator_error() -> None:
    from protocol.iscsi import LoginRequest, LoginResponse, LoginStatus
    pair = Pair()
    (answer,) = pdus(pair.send_raw(encode_pdu_bytes(LoginRequest(isid=bytes(6), itt=1, data=b"no-equals-sign\0"))))
    assert isinstance(answer, LoginResponse) and answer.status == LoginStatus.INITIATOR_ERROR
    assert pair.target.closing


def test_data_out_past_its_r2t_is_refused() -> None:
    config = IscsiConfig(target_name=TARGET, initial_r2t=True, immediate_data=False)
    pair = Pair(config=config)
    ready(pair)
    (r2t,) = pdus(pair.send_raw(encode_pdu_bytes(ScsiCommand(
        itt=80, cmdsn=pair.initiator.cmdsn, write=True, expected_length=10,
        cdb=bytes([0x0A, 0, 0, 0, 10, 0]).ljust(16, b"\0")))))
    (reject,) = pdus(pair.send_raw(encode_pdu_bytes(DataOut(final=True, itt=80, ttt=r2t.ttt, data=bytes(20)))))
    assert isinstance(reject, Reject) and decode_bhs(bytes(reject.data)).itt == 80
    assert pair.target.closing and pair.lun.blocks == []


@pytest.mark.parametrize("immediate", [True, False])
def test_unsolicited_data_then_r2t(immediate: bool) -> None:
    config = IscsiConfig(target_name=TARGET, immediate_data=immediate, initial_r2t=False, first_burst=8192,
                         max_recv_data_segment=4096, max_burst=65536)
    pair = Pair(config=config)
    pair.login()
    command(pair, TUR)
    before = len(pair.to_target)
    block = BLOCK[:100_000]
    assert command(pair, bytes([0x0A, 0]) + len(block).to_bytes(3, "big") + b"\0", data_out=block).reply.status == 0
    assert pair.lun.blocks == [block]
    sent = pdus(b"".join(pair.to_target[before:]))
    assert isinstance(sent[0], ScsiCommand) and not sent[0].final  # unsolicited Data-Out follows
    assert len(sent[0].data) == (4096 if immediate else 0)
    unsolicited = [p for p in sent if isinstance(p, DataOut) and p.ttt == 0xFFFFFFFF]
    assert sum(len(p.data) for p in unsolicited) == 8192 - len(sent[0].data) and unsolicited[-1].final
    solicited = [p for p in sent if isinstance(p, DataOut) and p.ttt != 0xFFFFFFFF]
    assert sum(len(p.data) for p in solicited) == len(block) - 8192


def test_immediate_data_filling_the_first_burst_ends_unsolicited_data() -> None:
    pair = Pair()
    pair.login()
    command(pair, TUR)
    before = len(pair.to_target)
    block = BLOCK * 4
    assert command(pair, bytes([0x0A, 0]) + len(block).to_bytes(3, "big") + b"\0", data_out=block).reply.status == 0
    sent = pdus(b"".join(pair.to_target[before:]))
    assert sent[0].final and len(sent[0].data) == 262144
    assert all(p.ttt != 0xFFFFFFFF for p in sent[1:])
    assert pair.lun.blocks == [block]


def test_a_write_longer_than_the_target_accepts_is_refused_before_buffering() -> None:
    pair = Pair(config=IscsiConfig(target_name=TARGET, max_transfer_bytes=1 << 20))
    ready(pair)
    block = BLOCK * 5  # 1.25 MiB
    reply = command(pair, bytes([0x0A, 0]) + len(block).to_bytes(3, "big") + b"\0", data_out=block).reply
    assert reply.status == 2 and reply.sense[2] == 0x05 and reply.sense[12] == 0x24
    assert pair.target.errors["TRANSFER_TOO_LARGE"] == 1 and pair.lun.blocks == []
    assert command(pair, TUR).reply.status == 0  # and the session goes on


def test_immediate_commands_are_bounded() -> None:
    config = IscsiConfig(target_name=TARGET, queue_depth=4, initial_r2t=True, immediate_data=False)
    pair = Pair(config=config)
    ready(pair)
    answers = []
    for itt in range(100, 106):  # writes that wait for data hold their tasks
        answers += pdus(pair.send_raw(encode_pdu_bytes(ScsiCommand(
            immediate=True, itt=itt, cmdsn=pair.initiator.cmdsn, write=True, expected_length=10,
            cdb=bytes([0x0A, 0, 0, 0, 10, 0]).ljust(16, b"\0")))))
    assert [type(a).__name__ for a in answers] == ["R2T"] * 4 + ["Reject"] * 2
    assert answers[-1].reason == RejectReason.IMMEDIATE_COMMAND_REJECT


def test_an_extended_cdb_is_rejected() -> None:
    pair = Pair()
    ready(pair)
    raw = encode_pdu_bytes(ScsiCommand(itt=300, cmdsn=pair.initiator.cmdsn, cdb=bytes(16),
                                       ahs=bytes([0, 5, 1, 0]) + bytes(4)))
    (reject,) = pdus(pair.send_raw(raw))
    assert isinstance(reject, Reject) and reject.reason == RejectReason.COMMAND_NOT_SUPPORTED
    assert pair.target.errors["EXTENDED_CDB"] == 1 and pair.lun.calls[-1][1] == bytes(6)


def test_the_initiator_reassembles_a_read_of_many_data_in() -> None:
    pair = Pair(offer={"MaxRecvDataSegmentLength": "4096", "MaxBurstLength": "16384"}, fragment=3000)
    ready(pair)
    command(pair, WRITE6, data_out=BLOCK)
    command(pair, REWIND)
    reply = command(pair, READ6, expected_in=len(BLOCK)).reply
    assert (reply.status, reply.data, reply.residual) == (0, BLOCK, 0)
    command(pair, REWIND)
    reply = command(pair, bytes([0x08, 0, 0, 0x40, 0, 0]), expected_in=0x4000).reply  # short read: ILI + data
    assert reply.status == 2 and reply.data == BLOCK[:0x4000]
