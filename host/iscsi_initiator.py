"""The initiator's side of one iSCSI connection, sans-I/O (h11 pattern).

Feed received bytes to :attr:`InitiatorConnection.reader` (or :meth:`receive_data`),
take events from :meth:`next_event`, and write whatever :meth:`data_to_send` returns
after every call. Time and sockets belong to the caller. One connection per session,
ErrorRecoveryLevel 0.
"""

from __future__ import annotations

import collections
import enum
import os
from dataclasses import dataclass, field

from protocol.iscsi import (
    R2T,
    RESERVED_TAG,
    AsyncMessage,
    DataIn,
    DataOut,
    IscsiDecodeError,
    IscsiError,
    IscsiLocalError,
    LoginRequest,
    LoginResponse,
    LogoutReason,
    LogoutRequest,
    LogoutResponse,
    NopIn,
    NopOut,
    Pdu,
    PduReader,
    Reject,
    ScsiCommand,
    ScsiResponse,
    SessionParams,
    Stage,
    TextRequest,
    TextResponse,
    TmfRequest,
    TmfResponse,
    accept_answers,
    chap_response,
    decode_binary,
    decode_text,
    encode_binary,
    encode_pdu,
    encode_text,
    respond,
)
from protocol.iscsi.chap import CHAP_MD5, CHALLENGE_SIZE, check_response
from protocol.iscsi.constants import CDB_FIELD_SIZE
from protocol.iscsi.serial import sn_lte

from .iscsi_events import (
    CommandComplete,
    Event,
    LoginComplete,
    LogoutComplete,
    NopComplete,
    Rejected,
    ScsiReply,
    TargetMessage,
    TextComplete,
    TmfComplete,
)

#: What our initiator offers; the target's answers decide (see SessionParams).
INITIATOR_OFFER = {
    "InitialR2T": "No",
    "ImmediateData": "Yes",
    "MaxRecvDataSegmentLength": "262144",
    "MaxBurstLength": "16776192",
    "FirstBurstLength": "262144",
    "MaxOutstandingR2T": "1",
    "MaxConnections": "1",
    "DataPDUInOrder": "Yes",
    "DataSequenceInOrder": "Yes",
    "ErrorRecoveryLevel": "0",
    "DefaultTime2Wait": "2",
    "DefaultTime2Retain": "0",
}

class Phase(enum.Enum):
    IDLE = "idle"
    LOGIN = "login"
    FULL_FEATURE = "full feature"
    LOGGED_OUT = "logged out"
    FAILED = "failed"


@dataclass
class _Task:
    itt: int
    cmdsn: int
    expected_in: int
    data_out: memoryview | None
    data_in: bytearray = field(default_factory=bytearray)
    received: int = 0
    first: bytes = b""  # the first Data-In's data: most replies are one PDU, kept without a copy

    def take_data(self) -> bytes:
        if not self.data_in:
            return self.first
        return bytes(memoryview(self.data_in)[:self.received])


class InitiatorConnection:
    """One connection of one session (normal, or discovery when ``target`` is None)."""

    def __init__(self, *, initiator: str, target: str | None, chap: tuple[str, str] | None = None,
                 mutual_chap: tuple[str, str] | None = None, digests: bool = False,
                 offer: dict[str, str] | None = None, isid: bytes | None = None, cmdsn: int = 1) -> None:
        self.initiator = initiator
        self.target = target
        self.chap = chap
        self.mutual_chap = mutual_chap
        self.offer = dict(INITIATOR_OFFER if offer is None else offer)
        digest = "CRC32C" if digests else "None"
        self.offer["HeaderDigest"] = digest
        self.offer["DataDigest"] = digest
        if target is None:
            for key in ("InitialR2T", "ImmediateData", "MaxBurstLength", "FirstBurstLength", "MaxOutstandingR2T",
                        "DataPDUInOrder", "DataSequenceInOrder", "DefaultTime2Wait", "DefaultTime2Retain",
                        "MaxConnections"):
                self.offer.pop(key, None)
        self.isid = isid if isid is not None else b"\x80" + os.urandom(5)
        self.phase = Phase.IDLE
        self.params = SessionParams()
        self.reader = PduReader(max_data_segment=int(self.offer["MaxRecvDataSegmentLength"]))
        self.tsih = 0
        self.cmdsn = cmdsn
        self.expstatsn = 0
        self.maxcmdsn = cmdsn
        self._itt = 0
        self._out: list[bytes | memoryview] = []
        self._events: collections.deque[Event] = collections.deque()
        self._tasks: dict[int, _Task] = {}
        self._waiting: collections.deque[Pdu] = collections.deque()  # non-immediate PDUs the window holds back
        self._pending: dict[int, str] = {}  # itt -> kind of non-SCSI request
        self._text: dict[int, bytearray] = {}
        self._agreed: dict[str, str] = {}
        self._stage = Stage.SECURITY
        self._login_itt = 0
        self._chap_state = ""
        self._mutual_challenge = (0, b"")
        self._target_alias = ""
        self._digests_on = False

    # --- bytes in and out -------------------------------------------------------

    def receive_data(self, data: bytes | memoryview) -> None:
        self.reader.feed(data)

    def data_to_send(self) -> list[bytes | memoryview]:
        out, self._out = self._out, []
        return out

    def _send(self, pdu: Pdu) -> None:
        self._out.extend(encode_pdu(pdu, header_digest=self._digests_on and self.params.header_digest,
                                    data_digest=self._digests_on and self.params.data_digest))

    def _next_itt(self) -> int:
        self._itt = (self._itt + 1) & 0xFFFFFFFF
        if self._itt == RESERVED_TAG:
            self._itt = 0
        return self._itt

    # --- login ----------------------------------------------------------------------

    def start_login(self) -> None:
        if self.phase is not Phase.IDLE:
            raise IscsiLocalError("login already started")
        self.phase = Phase.LOGIN
        self._login_itt = self._next_itt()
        keys: list[tuple[str, str]] = [("InitiatorName", self.initiator)]
        if self.target is None:
            keys.append(("SessionType", "Discovery"))
        else:
            keys += [("SessionType", "Normal"), ("TargetName", self.target)]
        if self.chap is not None:
            self._stage = Stage.SECURITY
            keys.append(("AuthMethod", "CHAP,None"))
            self._chap_state = "method"
            self._login(keys, transit=False, nsg=Stage.OPERATIONAL)
        else:
            self._stage = Stage.OPERATIONAL
            self._login(keys + list(self.offer.items()), transit=True, nsg=Stage.FULL_FEATURE)

    def _login(self, keys: list[tuple[str, str]], *, transit: bool, nsg: Stage) -> None:
        self._send(LoginRequest(transit=transit, csg=int(self._stage), nsg=int(nsg) if transit else 0,
                                isid=self.isid, tsih=self.tsih, itt=self._login_itt, cmdsn=self.cmdsn,
                                expstatsn=self.expstatsn, data=encode_text(keys)))

    def _on_login(self, pdu: LoginResponse) -> None:
        if pdu.status:
            self.phase = Phase.FAILED
            raise IscsiError(f"login refused by the target: status 0x{pdu.status:04x} "
                             f"({_login_status_text(pdu.status)})")
        self.expstatsn = (pdu.statsn + 1) & 0xFFFFFFFF
        self._window(pdu.expcmdsn, pdu.maxcmdsn)
        self.tsih = pdu.tsih
        pairs = decode_text(pdu.data)
        values = dict(pairs)
        self._target_alias = values.get("TargetAlias", self._target_alias)
        if pdu.csg == Stage.SECURITY:
            self._on_security(pdu, values)
            return
        try:
            self._agreed.update(accept_answers(self.offer, pairs))
        except ValueError as exc:
            self.phase = Phase.FAILED
            raise IscsiError(f"login: {exc}") from None
        if pdu.transit and pdu.nsg == Stage.FULL_FEATURE:
            self._agreed["initiator.MaxRecvDataSegmentLength"] = self.offer["MaxRecvDataSegmentLength"]
            self.params = SessionParams.from_agreed(self._agreed)
            self.phase = Phase.FULL_FEATURE
            self.reader.header_digest = self.params.header_digest
            self.reader.data_digest = self.params.data_digest
            self._digests_on = True
            self._events.append(LoginComplete(self.params, self.tsih, self._target_alias))
            return
        # the target wants another exchange: answer any keys it offered, ask to move on
        offered = [(k, v) for k, v in pairs if k not in self.offer]
        answers, agreed = respond(offered, self.offer)
        self._agreed.update(agreed)
        self._login(answers, transit=True, nsg=Stage.FULL_FEATURE)

    def _on_security(self, pdu: LoginResponse, values: dict[str, str]) -> None:
        assert self.chap is not None or values.get("AuthMethod", "None") == "None"
        if self._chap_state == "method":
            method = values.get("AuthMethod")
            if method == "CHAP":
                self._chap_state = "algorithm"
                self._login([("CHAP_A", CHAP_MD5)], transit=False, nsg=Stage.OPERATIONAL)
                return
            if method != "None" and not pdu.transit:
                self.phase = Phase.FAILED
                raise IscsiError(f"login: the target chose AuthMethod={method}")
        elif self._chap_state == "algorithm":
            if values.get("CHAP_A") != CHAP_MD5 or "CHAP_I" not in values or "CHAP_C" not in values:
                self.phase = Phase.FAILED
                raise IscsiError("login: the target offered no MD5 CHAP challenge")
            assert self.chap is not None
            name, secret = self.chap
            identifier = int(values["CHAP_I"])
            challenge = decode_binary(values["CHAP_C"])
            keys = [("CHAP_N", name), ("CHAP_R", encode_binary(chap_response(identifier, secret.encode(), challenge)))]
            if self.mutual_chap is not None:
                mine = (os.urandom(1)[0], os.urandom(CHALLENGE_SIZE))
                self._mutual_challenge = mine
                keys += [("CHAP_I", str(mine[0])), ("CHAP_C", encode_binary(mine[1]))]
            self._chap_state = "response"
            self._login(keys, transit=True, nsg=Stage.OPERATIONAL)
            return
        elif self._chap_state == "response" and self.mutual_chap is not None:
            name, secret = self.mutual_chap
            try:
                answer = decode_binary(values.get("CHAP_R", ""))
            except ValueError:
                answer = b""
            if values.get("CHAP_N") != name or not check_response(*self._mutual_challenge[:1], secret.encode(),
                                                                  self._mutual_challenge[1], answer):
                self.phase = Phase.FAILED
                raise IscsiError("login: the target failed mutual CHAP (wrong name or secret)")
        if pdu.transit and pdu.nsg == Stage.OPERATIONAL:
            self._stage = Stage.OPERATIONAL
            self._chap_state = "done"
            self._login(list(self.offer.items()), transit=True, nsg=Stage.FULL_FEATURE)
        else:
            self._login([], transit=True, nsg=Stage.OPERATIONAL)

    # --- requests --------------------------------------------------------------------

    def _window(self, expcmdsn: int, maxcmdsn: int) -> None:
        # a MaxCmdSN of ExpCmdSN - 1 closes the window; ignore stale (smaller) values
        if sn_lte((expcmdsn - 1) & 0xFFFFFFFF, maxcmdsn):
            if sn_lte(self.maxcmdsn, maxcmdsn) or self.phase is not Phase.FULL_FEATURE:
                self.maxcmdsn = maxcmdsn
        while self._waiting and sn_lte(self._waiting[0].cmdsn, self.maxcmdsn):  # type: ignore[attr-defined]
            self._send_now(self._waiting.popleft())

    def _queue(self, pdu: Pdu) -> None:
        """Send a numbered PDU now if the window allows, else when it opens."""
        if self._waiting or not sn_lte(pdu.cmdsn, self.maxcmdsn):  # type: ignore[attr-defined]
            self._waiting.append(pdu)
        else:
            self._send_now(pdu)

    def _send_now(self, pdu: Pdu) -> None:
        self._send(pdu)
        if isinstance(pdu, ScsiCommand) and pdu.write:
            self._send_unsolicited(self._tasks[pdu.itt], len(pdu.data))

    def _take_cmdsn(self, immediate: bool) -> int:
        sn = self.cmdsn
        if not immediate:
            self.cmdsn = (self.cmdsn + 1) & 0xFFFFFFFF
        return sn

    def _require_full_feature(self) -> None:
        if self.phase is not Phase.FULL_FEATURE:
            raise IscsiLocalError(f"the connection is {self.phase.value}, not in full feature phase")

    def send_command(self, cdb: bytes, *, data_out: bytes | memoryview | None = None, expected_in: int = 0,
                     lun: int = 0, immediate: bool = False) -> int:
        """Queue a SCSI command; its CommandComplete event carries the returned tag."""
        self._require_full_feature()
        if len(cdb) > CDB_FIELD_SIZE:
            raise IscsiLocalError(f"a CDB of {len(cdb)} octets needs an extended-CDB AHS (not supported)")
        if data_out is not None and expected_in:
            raise IscsiLocalError("bidirectional commands are not supported")
        itt = self._next_itt()
        view = memoryview(data_out).cast("B") if data_out is not None else None
        length = len(view) if view is not None else expected_in
        immediate_data = b""
        if view is not None and self.params.immediate_data:
            immediate_data = view[:min(self.params.first_burst, self.params.target_max_recv)]
        self._tasks[itt] = _Task(itt, self.cmdsn, expected_in, view)
        # F=0 announces unsolicited Data-Out to follow (only while the first burst is not used up)
        unsolicited = view is not None and not self.params.initial_r2t and \
            len(immediate_data) < min(len(view), self.params.first_burst)
        self._queue(ScsiCommand(immediate=immediate, final=not unsolicited,
                                read=expected_in > 0, write=view is not None and len(view) > 0,
                                lun=lun << 48 if lun < 256 else lun, itt=itt, expected_length=length,
                                cmdsn=self._take_cmdsn(immediate), expstatsn=self.expstatsn,
                                cdb=bytes(cdb).ljust(CDB_FIELD_SIZE, b"\0"), data=immediate_data))
        return itt

    def _send_unsolicited(self, task: _Task, sent: int) -> None:
        assert task.data_out is not None
        if self.params.initial_r2t:
            return
        end = min(len(task.data_out), self.params.first_burst)
        if sent < end:
            self._send_data(task, RESERVED_TAG, sent, end - sent)

    def _send_data(self, task: _Task, ttt: int, offset: int, length: int) -> None:
        assert task.data_out is not None
        step, end, datasn = self.params.target_max_recv, offset + length, 0
        while offset < end:
            n = min(step, end - offset)
            self._send(DataOut(final=offset + n == end, itt=task.itt, ttt=ttt, expstatsn=self.expstatsn,
                               datasn=datasn, offset=offset, data=task.data_out[offset:offset + n]))
            offset += n
            datasn += 1

    def send_text(self, pairs: list[tuple[str, str]]) -> int:
        self._require_full_feature()
        itt = self._next_itt()
        self._pending[itt] = "text"
        self._queue(TextRequest(itt=itt, cmdsn=self._take_cmdsn(False), expstatsn=self.expstatsn,
                                data=encode_text(pairs)))
        return itt

    def send_nop(self, data: bytes = b"") -> int:
        self._require_full_feature()
        itt = self._next_itt()
        self._pending[itt] = "nop"
        self._send(NopOut(immediate=True, itt=itt, cmdsn=self.cmdsn, expstatsn=self.expstatsn, data=data))
        return itt

    def send_tmf(self, function: int, *, referenced_tag: int = RESERVED_TAG, lun: int = 0) -> int:
        self._require_full_feature()
        itt = self._next_itt()
        self._pending[itt] = "tmf"
        task = self._tasks.get(referenced_tag)
        self._send(TmfRequest(function=function, lun=lun << 48 if lun < 256 else lun, itt=itt,
                              referenced_tag=referenced_tag, cmdsn=self.cmdsn, expstatsn=self.expstatsn,
                              refcmdsn=task.cmdsn if task else self.cmdsn))
        return itt

    def send_logout(self, reason: int = LogoutReason.CLOSE_SESSION) -> int:
        self._require_full_feature()
        itt = self._next_itt()
        self._pending[itt] = "logout"
        self._send(LogoutRequest(reason=reason, itt=itt, cmdsn=self.cmdsn, expstatsn=self.expstatsn))
        return itt

    def forget(self, itt: int) -> None:
        """Drop a task the target aborted (after ABORT TASK said FUNCTION COMPLETE)."""
        self._tasks.pop(itt, None)

    @property
    def outstanding(self) -> int:
        return len(self._tasks)

    # --- what the target sends -------------------------------------------------------

    def next_event(self) -> Event | None:
        """The next event, or None until more bytes arrive; raises IscsiError or IscsiDecodeError."""
        while not self._events:
            pdu = self.reader.next_pdu()
            if pdu is None:
                return None
            self._handle(pdu)
        return self._events.popleft()

    def _status(self, pdu: ScsiResponse | DataIn | NopIn | TextResponse | TmfResponse | LogoutResponse) -> None:
        if sn_lte(self.expstatsn, pdu.statsn):
            self.expstatsn = (pdu.statsn + 1) & 0xFFFFFFFF
        self._window(pdu.expcmdsn, pdu.maxcmdsn)

    def _handle(self, pdu: Pdu) -> None:
        if isinstance(pdu, LoginResponse):
            if self.phase is not Phase.LOGIN:
                raise IscsiError("the target sent a Login Response outside login")
            self._on_login(pdu)
            return
        if self.phase is not Phase.FULL_FEATURE:
            raise IscsiError(f"the target sent {type(pdu).__name__} during {self.phase.value}")
        if isinstance(pdu, DataIn):
            self._on_data_in(pdu)
        elif isinstance(pdu, ScsiResponse):
            self._status(pdu)
            task = self._tasks.pop(pdu.itt, None)
            if task is None:
                raise IscsiError(f"SCSI Response for unknown task 0x{pdu.itt:08x}")
            sense = b""
            if len(pdu.data) >= 2:
                sense = bytes(pdu.data[2:2 + int.from_bytes(pdu.data[:2], "big")])
            residual = pdu.residual if pdu.underflow else -pdu.residual if pdu.overflow else 0
            self._events.append(CommandComplete(pdu.itt, ScsiReply(pdu.status, task.take_data(),
                                                                   sense, residual)))
        elif isinstance(pdu, R2T):
            self._window(pdu.expcmdsn, pdu.maxcmdsn)
            task = self._tasks.get(pdu.itt)
            if task is None or task.data_out is None or pdu.offset + pdu.length > len(task.data_out):
                raise IscsiError(f"R2T for unknown task or past its data (0x{pdu.itt:08x})")
            self._send_data(task, pdu.ttt, pdu.offset, pdu.length)
        elif isinstance(pdu, NopIn):
            if pdu.itt != RESERVED_TAG:
                self._status(pdu)
                self._pending.pop(pdu.itt, None)
                self._events.append(NopComplete(pdu.itt, bytes(pdu.data)))
            else:
                self._window(pdu.expcmdsn, pdu.maxcmdsn)
                if pdu.ttt != RESERVED_TAG:  # a ping from the target: answer it
                    self._send(NopOut(immediate=True, lun=pdu.lun, itt=RESERVED_TAG, ttt=pdu.ttt, cmdsn=self.cmdsn,
                                      expstatsn=self.expstatsn, data=pdu.data))
        elif isinstance(pdu, TextResponse):
            self._status(pdu)
            buf = self._text.setdefault(pdu.itt, bytearray())
            buf += pdu.data
            if pdu.cont or not pdu.final:
                self._send(TextRequest(itt=pdu.itt, ttt=pdu.ttt, cmdsn=self.cmdsn, expstatsn=self.expstatsn))
                return
            self._pending.pop(pdu.itt, None)
            self._events.append(TextComplete(pdu.itt, decode_text(bytes(self._text.pop(pdu.itt)))))
        elif isinstance(pdu, TmfResponse):
            self._status(pdu)
            self._pending.pop(pdu.itt, None)
            self._events.append(TmfComplete(pdu.itt, pdu.response))
        elif isinstance(pdu, LogoutResponse):
            self._status(pdu)
            self._pending.pop(pdu.itt, None)
            self.phase = Phase.LOGGED_OUT
            self._events.append(LogoutComplete(pdu.itt, pdu.response))
        elif isinstance(pdu, Reject):
            self._window(pdu.expcmdsn, pdu.maxcmdsn)
            itt = int.from_bytes(pdu.data[16:20], "big") if len(pdu.data) >= 20 else RESERVED_TAG
            self._tasks.pop(itt, None)
            self._pending.pop(itt, None)
            self._events.append(Rejected(itt, pdu.reason))
        elif isinstance(pdu, AsyncMessage):
            self._window(pdu.expcmdsn, pdu.maxcmdsn)
            self._events.append(TargetMessage(pdu.event, (pdu.param1, pdu.param2, pdu.param3)))
        else:
            raise IscsiError(f"the target sent an initiator PDU ({type(pdu).__name__})")

    def _on_data_in(self, pdu: DataIn) -> None:
        task = self._tasks.get(pdu.itt)
        if task is None:
            raise IscsiError(f"Data-In for unknown task 0x{pdu.itt:08x}")
        end = pdu.offset + len(pdu.data)
        if end > task.expected_in:
            raise IscsiError(f"Data-In past the expected length ({end} > {task.expected_in})")
        if task.received == 0 and pdu.offset == 0 and not task.first:
            task.first = bytes(pdu.data)
        else:
            if not task.data_in:
                task.data_in = bytearray(task.expected_in)
                task.data_in[:len(task.first)] = task.first
            task.data_in[pdu.offset:end] = pdu.data
        task.received = max(task.received, end)
        if pdu.has_status:
            self._status(pdu)
            del self._tasks[pdu.itt]
            residual = pdu.residual if pdu.underflow else -pdu.residual if pdu.overflow else 0
            self._events.append(CommandComplete(pdu.itt, ScsiReply(pdu.status, task.take_data(),
                                                                   b"", residual)))


def _login_status_text(status: int) -> str:
    from protocol.iscsi import LoginStatus
    try:
        return LoginStatus(status).name.replace("_", " ").lower()
    except ValueError:
        return "unknown status"


__all__ = ["InitiatorConnection", "ScsiReply", "Phase", "LoginComplete", "CommandComplete", "TextComplete",
           "NopComplete", "TmfComplete", "LogoutComplete", "Rejected", "TargetMessage", "Event", "IscsiDecodeError"]
