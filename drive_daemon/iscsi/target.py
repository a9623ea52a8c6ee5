"""The target's side of one iSCSI connection, sans-I/O (h11 pattern).

The shell feeds received bytes to :attr:`TargetConnection.reader`, calls
:meth:`TargetConnection.process` with the time, writes :meth:`data_to_send`, hands
:meth:`take_outputs` to its callback and closes the socket once :attr:`closing` is
set and everything is written. One connection per session, ErrorRecoveryLevel 0.

Full feature phase: SCSI commands reach the LUN in CmdSN order, each with its whole
data-out (immediate data, unsolicited Data-Out, then R2T bursts of at most
MaxBurstLength, at most MaxOutstandingR2T at a time); replies are Data-In split by the
initiator's MaxRecvDataSegmentLength with the status in the last one when GOOD, or a
SCSI Response with autosense. Malformed PDUs get a Reject (or a dropped connection when
the stream can no longer be trusted), counted in :attr:`errors` by reason.
"""

from __future__ import annotations

import collections
import enum
import itertools

from protocol.iscsi import (
    R2T,
    RESERVED_TAG,
    DataOut,
    IscsiDecodeError,
    IscsiReason,
    LoginRequest,
    LogoutReason,
    LogoutRequest,
    LogoutResponse,
    LogoutResult,
    NopIn,
    NopOut,
    Opcode,
    Pdu,
    PduReader,
    Reject,
    RejectReason,
    ScsiCommand,
    SessionParams,
    TextRequest,
    TextResponse,
    TmfFunction,
    TmfRequest,
    TmfResponse,
    TmfResult,
    decode_text,
    encode_pdu,
    encode_text,
)
from protocol.iscsi.constants import BHS_SIZE, MAX_TEXT_DATA
from protocol.iscsi.serial import sn_add, sn_lte

from .config import IscsiConfig
from .login import LoginDone, TargetLogin
from .lun import (
    CHECK_CONDITION,
    GOOD,
    INQUIRY,
    INQUIRY_NO_LUN,
    REPORT_LUNS,
    SENSE_INVALID_FIELD_IN_CDB,
    SENSE_LUN_NOT_SUPPORTED,
    ScsiLun,
    ScsiOutcome,
    lun_number,
)
from .tasks import Burst, Task, reply_pdus

_tsih = itertools.count(1)


class State(enum.Enum):
    LOGIN = "login"
    FULL_FEATURE = "full feature"
    CLOSED = "closed"


class TargetConnection:
    """One initiator's connection to the target serving ``lun``."""

    def __init__(self, config: IscsiConfig, lun: ScsiLun, *, portal: tuple[str, int] = ("127.0.0.1", 3260)) -> None:
        self.config = config
        self.lun = lun
        self.portal = portal
        self.state = State.LOGIN
        self.reader = PduReader(max_data_segment=max(config.max_recv_data_segment, MAX_TEXT_DATA))
        self.params = SessionParams()
        self.nexus = ""
        self.discovery = False
        self.statsn = 1
        self.expcmdsn = 0
        self.errors: collections.Counter[str] = collections.Counter()
        #: set once the connection must close (after what is queued has been written)
        self.closing = False
        self.close_reason = ""
        self._login = TargetLogin(config, tsih=next(_tsih) & 0xFFFF or 1, statsn=self.statsn)
        self._digests = (False, False)
        self._out: list[bytes | memoryview] = []
        self._outputs: list[object] = []
        self._tasks: dict[int, Task] = {}
        self._order: collections.deque[Task] = collections.deque()
        self._held: dict[int, Pdu] = {}       # numbered PDUs that arrived ahead of ExpCmdSN
        self._ttt = itertools.count(1)
        self._ping_ttt: int | None = None
        self.last_heard = 0.0

    # --- the shell's calls ----------------------------------------------------------------

    def receive_data(self, data: bytes | memoryview) -> None:
        self.reader.feed(data)

    def data_to_send(self) -> list[bytes | memoryview]:
        out, self._out = self._out, []
        return out

    def take_outputs(self) -> list[object]:
        out, self._outputs = self._outputs, []
        return out

    @property
    def maxcmdsn(self) -> int:
        return sn_add(self.expcmdsn, self.config.queue_depth - 1 - len(self._order))

    def process(self, now: float) -> None:
        """Handle every complete PDU received so far."""
        while not self.closing:
            try:
                pdu = self.reader.next_pdu()
            except IscsiDecodeError as exc:
                self._malformed(exc)
                continue
            if pdu is None:
                return
            self.last_heard = now
            self._dispatch(pdu, now)

    def ping(self, now: float) -> bool:
        """Send a NOP-In ping; False if the previous one is still unanswered (close then)."""
        if self.state is not State.FULL_FEATURE:
            return False
        if self._ping_ttt is not None:
            return False
        self._ping_ttt = next(self._ttt) & 0x7FFFFFFF
        self._send(NopIn(lun=0, itt=RESERVED_TAG, ttt=self._ping_ttt, statsn=self.statsn, expcmdsn=self.expcmdsn,
                         maxcmdsn=self.maxcmdsn))
        return True

    def connection_lost(self) -> None:
        """The socket is gone: the I_T nexus ends and its tasks with it."""
        self._end_nexus()
        self.state = State.CLOSED

    def _end_nexus(self) -> None:
        self._abort_all()
        if self.nexus and self.state is State.FULL_FEATURE and not self.discovery:
            self.lun.nexus_lost(self.nexus)
        self.nexus = ""

    # --- output ---------------------------------------------------------------------------

    def _send(self, pdu: Pdu) -> None:
        self._out.extend(encode_pdu(pdu, header_digest=self._digests[0], data_digest=self._digests[1]))

    def _close(self, reason: str) -> None:
        self.closing = True
        self.close_reason = reason

    def _count(self, reason: str) -> None:
        self.errors[reason] += 1

    def _reject(self, reason: RejectReason, header: bytes, counted: str) -> None:
        self._count(counted)
        self._send(Reject(reason=reason, statsn=self.statsn, expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn,
                          data=header[:BHS_SIZE]))

    def _malformed(self, exc: IscsiDecodeError) -> None:
        if self.state is State.LOGIN or exc.iscsi_reason is IscsiReason.HEADER_DIGEST or (exc.fatal and not exc.header):
            # the header itself cannot be trusted (or the login is broken): no Reject, just close
            self._count(exc.iscsi_reason.name)
            self._close(str(exc))
            return
        reason = {IscsiReason.DATA_DIGEST: RejectReason.DATA_DIGEST_ERROR,
                  IscsiReason.UNKNOWN_OPCODE: RejectReason.COMMAND_NOT_SUPPORTED,
                  IscsiReason.TOO_LARGE: RejectReason.PROTOCOL_ERROR}.get(exc.iscsi_reason,
                                                                          RejectReason.INVALID_PDU_FIELD)
        self._reject(reason, exc.header, exc.iscsi_reason.name)
        opcode = exc.header[0] & 0x3F if exc.header else None
        if exc.fatal or opcode in (Opcode.SCSI_COMMAND, Opcode.DATA_OUT):
            # at ErrorRecoveryLevel 0 a task that lost data cannot be finished: end the connection
            self._close(str(exc))

    # --- dispatch -------------------------------------------------------------------------

    def _dispatch(self, pdu: Pdu, now: float) -> None:
        if self.state is State.LOGIN:
            if not isinstance(pdu, LoginRequest):
                self._count("NOT_LOGGED_IN")
                self._close(f"{type(pdu).__name__} before login completed")
                return
            self._on_login(pdu)
            return
        if isinstance(pdu, DataOut):
            self._on_data_out(pdu, now)
        elif isinstance(pdu, (ScsiCommand, TextRequest, TmfRequest, LogoutRequest, NopOut)):
            self._numbered(pdu, now)
        elif isinstance(pdu, LoginRequest):
            self._reject(RejectReason.PROTOCOL_ERROR, self._header(pdu), "LOGIN_IN_FULL_FEATURE")
        else:
            self._reject(RejectReason.PROTOCOL_ERROR, self._header(pdu), f"UNEXPECTED_{pdu.opcode.name}")

    @staticmethod
    def _header(pdu: Pdu) -> bytes:
        return bytes(encode_pdu(pdu)[0][:BHS_SIZE])

    def _on_login(self, pdu: LoginRequest) -> None:
        response = self._login.receive(pdu)
        self._send(response)
        self.statsn = self._login.statsn
        if self._login.failure is not None:
            self._count(f"LOGIN_{self._login.failure.status.name}")
            self._close(f"login refused: {self._login.failure}")
            return
        done: LoginDone | None = self._login.done
        if done is None:
            return
        self.state = State.FULL_FEATURE
        self.params = done.params
        self.discovery = done.discovery
        self.nexus = f"{done.initiator_name},i,0x{done.isid.hex()}"
        self.expcmdsn = done.initial_cmdsn
        self._digests = (self.params.header_digest, self.params.data_digest)
        self.reader.header_digest, self.reader.data_digest = self._digests
        self.reader.max_data_segment = self.config.max_recv_data_segment

    def _numbered(self, pdu: ScsiCommand | TextRequest | TmfRequest | LogoutRequest | NopOut, now: float) -> None:
        if pdu.immediate:
            self._execute_pdu(pdu, now)
            return
        if isinstance(pdu, NopOut) and pdu.itt == RESERVED_TAG:
            self._execute_pdu(pdu, now)  # a NOP-Out answering our ping carries no CmdSN of its own
            return
        if not (sn_lte(self.expcmdsn, pdu.cmdsn) and sn_lte(pdu.cmdsn, self.maxcmdsn)):
            self._count("CMDSN_OUT_OF_WINDOW")  # RFC 7143 3.2.2.1: silently ignored
            return
        if pdu.cmdsn != self.expcmdsn:
            self._held[pdu.cmdsn] = pdu
            return
        self.expcmdsn = sn_add(self.expcmdsn, 1)
        self._execute_pdu(pdu, now)
        while self.expcmdsn in self._held and not self.closing:
            held = self._held.pop(self.expcmdsn)
            self.expcmdsn = sn_add(self.expcmdsn, 1)
            self._execute_pdu(held, now)  # type: ignore[arg-type]

    def _execute_pdu(self, pdu: ScsiCommand | TextRequest | TmfRequest | LogoutRequest | NopOut, now: float) -> None:
        if isinstance(pdu, ScsiCommand):
            self._on_command(pdu, now)
        elif isinstance(pdu, NopOut):
            self._on_nop(pdu)
        elif isinstance(pdu, TextRequest):
            self._on_text(pdu)
        elif isinstance(pdu, TmfRequest):
            self._on_tmf(pdu, now)
        else:
            self._on_logout(pdu)

    # --- NOP, Text, Logout -------------------------------------------------------------------

    def _on_nop(self, pdu: NopOut) -> None:
        if pdu.itt == RESERVED_TAG:
            if pdu.ttt != RESERVED_TAG and pdu.ttt == self._ping_ttt:
                self._ping_ttt = None
            return
        self._send(NopIn(lun=pdu.lun, itt=pdu.itt, ttt=RESERVED_TAG, statsn=self._next_statsn(),
                         expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn, data=pdu.data))

    def _next_statsn(self) -> int:
        sn = self.statsn
        self.statsn = sn_add(sn, 1)
        return sn

    def _on_text(self, pdu: TextRequest) -> None:
        try:
            pairs = decode_text(pdu.data)
        except IscsiDecodeError as exc:
            self._reject(RejectReason.INVALID_PDU_FIELD, self._header(pdu), exc.iscsi_reason.name)
            return
        answers: list[tuple[str, str]] = []
        for key, value in pairs:
            if key == "SendTargets":
                if value in ("All", "", self.config.target_name):
                    host, port = self.portal
                    answers += [("TargetName", self.config.target_name),
                                ("TargetAddress", f"{host}:{port},{self.config.portal_group_tag}")]
            else:
                answers.append((key, "NotUnderstood"))
        self._send(TextResponse(final=True, lun=pdu.lun, itt=pdu.itt, ttt=RESERVED_TAG, statsn=self._next_statsn(),
                                expcmdsn=self.expcmdsn, maxcmdsn=self.maxcmdsn, data=encode_text(answers)))

    def _on_logout(self, pdu: LogoutRequest) -> None:
        result = LogoutResult.SUCCESS
        if pdu.reason == LogoutReason.REMOVE_FOR_RECOVERY:
            result = LogoutResult.RECOVERY_NOT_SUPPORTED
        self._end_nexus()
        self._send(LogoutResponse(response=result, itt=pdu.itt, statsn=self._next_statsn(), expcmdsn=self.expcmdsn,
                                  maxcmdsn=self.maxcmdsn, time2wait=self.params.time2wait, time2retain=0))
        self._close("logout")

    # --- task management ---------------------------------------------------------------------

    def _abort_all(self) -> None:
        self._tasks.clear()
        self._order.clear()

    def _abort(self, task: Task) -> None:
        self._tasks.pop(task.pdu.itt, None)
        try:
            self._order.remove(task)
        except ValueError:
            pass

    def _on_tmf(self, pdu: TmfRequest, now: float) -> None:
        result = TmfResult.FUNCTION_COMPLETE
        function = pdu.function
        close = False
        if self.discovery:
            result = TmfResult.REJECTED
        elif function == TmfFunction.ABORT_TASK:
            task = self._tasks.get(pdu.referenced_tag)
            if task is not None:
                self._abort(task)
            elif not (sn_lte(self.expcmdsn, pdu.refcmdsn) and sn_lte(pdu.refcmdsn, self.maxcmdsn)
                      and pdu.refcmdsn != pdu.cmdsn):
                result = TmfResult.TASK_DOES_NOT_EXIST
        elif function in (TmfFunction.ABORT_TASK_SET, TmfFunction.CLEAR_TASK_SET):
            self._abort_all()
        elif function in (TmfFunction.LOGICAL_UNIT_RESET, TmfFunction.TARGET_WARM_RESET,
                          TmfFunction.TARGET_COLD_RESET):
            if function == TmfFunction.LOGICAL_UNIT_RESET and lun_number(pdu.lun) != 0:
                result = TmfResult.LUN_DOES_NOT_EXIST
            else:
                self._abort_all()
                self.lun.lun_reset(now)
                close = function == TmfFunction.TARGET_COLD_RESET
        elif function == TmfFunction.TASK_REASSIGN:
            result = TmfResult.REASSIGNMENT_NOT_SUPPORTED
        else:
            result = TmfResult.NOT_SUPPORTED
        self._send(TmfResponse(response=result, itt=pdu.itt, statsn=self._next_statsn(), expcmdsn=self.expcmdsn,
                               maxcmdsn=self.maxcmdsn))
        if close:
            self._close("target cold reset")

    # --- SCSI commands and their data ----------------------------------------------------------

    def _on_command(self, pdu: ScsiCommand, now: float) -> None:
        if self.discovery:
            self._reject(RejectReason.PROTOCOL_ERROR, self._header(pdu), "SCSI_IN_DISCOVERY")
            return
        if pdu.itt in self._tasks or pdu.itt == RESERVED_TAG:
            self._reject(RejectReason.TASK_IN_PROGRESS if pdu.itt != RESERVED_TAG else RejectReason.INVALID_PDU_FIELD,
                         self._header(pdu), "DUPLICATE_TAG")
            return
        if pdu.read and pdu.write:
            self._reject(RejectReason.COMMAND_NOT_SUPPORTED, self._header(pdu), "BIDIRECTIONAL")
            return
        if pdu.ahs:  # an extended CDB (no SSC command needs more than 16 octets)
            self._reject(RejectReason.COMMAND_NOT_SUPPORTED, self._header(pdu), "EXTENDED_CDB")
            return
        if pdu.immediate and len(self._tasks) >= self.config.queue_depth:
            # immediate commands bypass the CmdSN window: bound them here
            self._reject(RejectReason.IMMEDIATE_COMMAND_REJECT, self._header(pdu), "TOO_MANY_TASKS")
            return
        length = pdu.expected_length
        if pdu.write and length > self.config.max_transfer_bytes:
            # refused before any buffer is allocated; its unsolicited Data-Out will find no task
            self._count("TRANSFER_TOO_LARGE")
            self._respond(Task(pdu, pdu.immediate, 0, None), ScsiOutcome(CHECK_CONDITION,
                                                                          sense=SENSE_INVALID_FIELD_IN_CDB))
            return
        immediate = bytes(pdu.data) if isinstance(pdu.data, memoryview) else pdu.data
        if immediate and (not pdu.write or not self.params.immediate_data or len(immediate) > length
                          or len(immediate) > self.params.first_burst):
            self._reject(RejectReason.PROTOCOL_ERROR, self._header(pdu), "UNEXPECTED_IMMEDIATE_DATA")
            self._close("immediate data outside what was negotiated")
            return
        data: bytes | bytearray | None = None
        task = Task(pdu, pdu.immediate, length, None)
        if pdu.write and length:
            if len(immediate) == length:
                data = immediate
            else:
                data = bytearray(length)
                data[:len(immediate)] = immediate
            task.data = data
            task.received = len(immediate)
            task.unsolicited_end = len(immediate) if pdu.final or self.params.initial_r2t else min(
                self.params.first_burst, length)
            task.unsolicited_next = len(immediate)
            task.next_r2t_offset = task.unsolicited_end
        self._tasks[pdu.itt] = task
        if not pdu.immediate:
            self._order.append(task)
        self._issue_r2ts(task)
        self._run(now, task if pdu.immediate else None)

    def _issue_r2ts(self, task: Task) -> None:
        while task.data is not None and task.next_r2t_offset < task.length and len(task.bursts) < self.params.max_outstanding_r2t:
            offset = task.next_r2t_offset
            length = min(self.params.max_burst, task.length - offset)
            ttt = next(self._ttt) & 0x7FFFFFFF
            task.bursts[ttt] = Burst(offset, length)
            task.next_r2t_offset += length
            self._send(R2T(lun=task.pdu.lun, itt=task.pdu.itt, ttt=ttt, statsn=self.statsn, expcmdsn=self.expcmdsn,
                           maxcmdsn=self.maxcmdsn, r2tsn=task.r2tsn, offset=offset, length=length))
            task.r2tsn += 1

    def _on_data_out(self, pdu: DataOut, now: float) -> None:
        task = self._tasks.get(pdu.itt)
        if task is None or task.data is None:
            # the task may have been aborted while its data was in flight: drop quietly
            self._count("DATA_OUT_UNKNOWN_TASK")
            return
        n = len(pdu.data)
        if pdu.ttt == RESERVED_TAG:
            if pdu.offset != task.unsolicited_next or pdu.offset + n > task.unsolicited_end:
                self._reject(RejectReason.PROTOCOL_ERROR, self._header(pdu), "UNSOLICITED_DATA_OUT_OF_RANGE")
                self._close("unsolicited data out of order or past the first burst")
                return
            task.unsolicited_next += n
        else:
            burst = task.bursts.get(pdu.ttt)
            if burst is None or pdu.offset != burst.offset + burst.received or burst.received + n > burst.length \
                    or pdu.datasn != burst.datasn:
                self._reject(RejectReason.PROTOCOL_ERROR, self._header(pdu), "DATA_OUT_OUT_OF_RANGE")
                self._close("Data-Out does not match its R2T")
                return
            burst.received += n
            burst.datasn += 1
            if burst.received == burst.length:
                del task.bursts[pdu.ttt]
        assert isinstance(task.data, bytearray)
        task.data[pdu.offset:pdu.offset + n] = pdu.data
        task.received += n
        self._issue_r2ts(task)
        if task.ready:
            self._run(now, task if task.immediate else None)

    def _run(self, now: float, immediate: Task | None) -> None:
        """Execute the immediate task if ready, then every ready task at the head of CmdSN order."""
        if immediate is not None:
            if immediate.ready:
                self._tasks.pop(immediate.pdu.itt, None)
                self._complete(immediate, now)
            return
        while self._order and self._order[0].ready and not self.closing:
            task = self._order.popleft()
            self._tasks.pop(task.pdu.itt, None)
            self._complete(task, now)

    def _complete(self, task: Task, now: float) -> None:
        pdu = task.pdu
        if lun_number(pdu.lun) != 0:
            outcome = self._no_such_lun(pdu.cdb)
        else:
            data_out = task.data if pdu.write else None
            outcome = self.lun.execute(self.nexus, pdu.cdb, data_out, now)
        if outcome.output is not None:
            self._outputs.append(outcome.output)
        self._respond(task, outcome)

    def _no_such_lun(self, cdb: bytes) -> ScsiOutcome:
        if cdb[0] == INQUIRY:
            return ScsiOutcome(GOOD, INQUIRY_NO_LUN)
        if cdb[0] == REPORT_LUNS:
            return self.lun.execute(self.nexus, cdb, None, 0.0)
        return ScsiOutcome(CHECK_CONDITION, sense=SENSE_LUN_NOT_SUPPORTED)

    def _respond(self, task: Task, outcome: ScsiOutcome) -> None:
        for pdu in reply_pdus(task.pdu, task.length, outcome, self.params, self._next_statsn, self.expcmdsn,
                              self.maxcmdsn):
            self._send(pdu)
