"""The Token, sans-I/O: decoded messages and the time in, bytes to send and events out.

It holds what the KMS wrote (wrapped packages, never a plain key), answers key
requests from pre-encoded bodies, records acknowledgements and error reports,
and authenticates every management request with the token secret and a counter.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass, field

from protocol import (
    BROADCAST_HOST,
    Address,
    ClearError,
    ClearKeys,
    ErrorReport,
    Frame,
    KeyAck,
    KeyRequest,
    KeysAvailable,
    Message,
    MgmtChallenge,
    MgmtResult,
    NoPackage,
    ReadStatus,
    Resync,
    TokenError,
    TokenStatus,
    Transmit,
    WriteEkt,
    WriteOkt,
    authenticate,
    decode_header,
    encode,
    encode_authenticated,
    encode_body,
    envelope,
    frame_body,
    reportauth,
)
from protocol.constants import (
    CHALLENGE_SIZE,
    DRIVE_LAN_PORT,
    HEADER_SIZE,
    KEY_REQUEST_ANSWERS_PER_CSN_PER_S,
    KEY_REQUEST_UNKNOWN_ANSWERS_PER_S,
    MAX_BROADCAST_DATAGRAM,
    KeyKind,
    MessageType,
    MgmtStatus,
    NoPackageReason,
    TokenLed,
    TokenMode,
)
from protocol.errors import AuthenticationError, DecodeError

from .memory import TokenMemory

BROADCAST: Address = (BROADCAST_HOST, DRIVE_LAN_PORT)
_CLEAR_PART_OVERHEAD = HEADER_SIZE + 8 + 2 + 2 + 2
_CLEAR_ENTRY = 32
CLEAR_ENTRIES_PER_DATAGRAM = (MAX_BROADCAST_DATAGRAM - _CLEAR_PART_OVERHEAD) // _CLEAR_ENTRY


# --- events ------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    mode: TokenMode
    timestamp: int
    csn_count: int


@dataclass(frozen=True)
class PackageServed:
    csn: bytes
    kind: KeyKind


@dataclass(frozen=True)
class NothingToServe:
    csn: bytes
    reason: NoPackageReason


@dataclass(frozen=True)
class Acknowledged:
    csn: bytes
    kind: KeyKind
    erased: bool


@dataclass(frozen=True)
class AckRejected:
    csn: bytes
    why: str


@dataclass(frozen=True)
class ErrorRecorded:
    error: TokenError


@dataclass(frozen=True)
class ErrorIgnored:
    csn: bytes
    why: str


@dataclass(frozen=True)
class AnswerThrottled:
    """A KEY_REQUEST over its CSN's answer budget for this second: dropped, not answered."""

    csn: bytes


@dataclass(frozen=True)
class ManagementRefused:
    status: MgmtStatus
    why: str


@dataclass(frozen=True)
class ChallengeIssued:
    """A request reached a token without a replay counter: it was answered with a challenge."""

    counter: int


@dataclass(frozen=True)
class CounterResynced:
    """A RESYNC with the current challenge set the replay counter's floor."""

    counter: int


@dataclass(frozen=True)
class ErrorsCleared:
    count: int


@dataclass(frozen=True)
class ResetPressed:
    csn_count: int


@dataclass(frozen=True)
class Wiped:
    pass


@dataclass(frozen=True)
class Unexpected:
    message_type: MessageType


Event = (
    Written | PackageServed | NothingToServe | Acknowledged | AckRejected | ErrorRecorded | ErrorIgnored
    | AnswerThrottled | ManagementRefused | ChallengeIssued | CounterResynced | ErrorsCleared | ResetPressed | Wiped
    | Unexpected
)


@dataclass
class Output:
    sends: list[Transmit] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: The memory image changed and must be written before anything else is acknowledged.
    persist: bool = False
    #: The management reply, when the input was a management request.
    reply: bytes | None = None


@dataclass(frozen=True)
class _Reply:
    """A KEY_REQUEST's answer but for the echoed sequence: a package or NO_PACKAGE body."""

    message_type: MessageType
    body: bytes
    event: PackageServed | NothingToServe


_KIND_OF_MODE = {TokenMode.EKT: KeyKind.DEVICE, TokenMode.OKT: KeyKind.MEDIA}
_PACKAGE_TYPE = {KeyKind.DEVICE: MessageType.DEVICE_KEY_PACKAGE, KeyKind.MEDIA: MessageType.MEDIA_KEY_PACKAGE}


class Token:
    def __init__(self, memory: TokenMemory, secret: bytes) -> None:
        if len(secret) != 32:
            raise ValueError("a token secret is 32 octets")
        self.memory = memory
        self._secret = secret
        self._announcement: bytes | None = None
        self._pending = 0
        #: The challenge a RESYNC must carry (volatile: a restart makes a new one).
        self._challenge: bytes | None = None
        # KEY_REQUEST answers in the current one-second window, per CSN held (None: any CSN
        # not held, one shared budget); cleared each window, so bounded by the CSNs held.
        self._window_s = -1
        self._answers: dict[bytes | None, int] = {}
        #: What a KEY_REQUEST for a held CSN gets, by (CSN, kind): built at its first pull after a
        #: write, then re-sent (only the echoed sequence differs). Cleared by every write, so
        #: bounded by the CSNs held; the requester's held timestamp changes no answer.
        self._replies: dict[tuple[bytes, KeyKind], _Reply] = {}
        self._serving: KeyKind | None = None
        self._rebuild_announcement()

    # --- state the daemon reports ---------------------------------------

    @property
    def led3(self) -> TokenLed:
        if self.memory.mode is TokenMode.OKT and self.memory.packages:
            return TokenLed.SOLID_GREEN
        if self.memory.mode is TokenMode.EKT and self.memory.packages:
            return TokenLed.FLASHING_GREEN
        return TokenLed.OFF

    @property
    def error_led(self) -> TokenLed:
        return TokenLed.FLASHING_RED if self.memory.errors else TokenLed.OFF

    def status(self) -> TokenStatus:
        mem = self.memory
        return TokenStatus(
            token_id=mem.token_id,
            mode=mem.mode,
            led3=self.led3,
            error_led=self.error_led,
            timestamp=mem.timestamp,
            pool=mem.pool,
            csn_count=len(mem.packages),
            packages_held=sum(1 for p in mem.packages.values() if p.package_body is not None),
            acknowledged=sum(1 for p in mem.packages.values() if p.acknowledged_at),
            errors=tuple(mem.errors.values()),
            last_write_counter=mem.last_write_counter,
        )

    def announcement(self) -> Transmit | None:
        """KEYS_AVAILABLE for the periodic re-announce, built once per write."""
        if self._announcement is None or self._pending == 0:
            return None
        return Transmit(BROADCAST, MessageType.KEYS_AVAILABLE, self._announcement)

    def _rebuild_announcement(self) -> None:
        """Once per write: the KMS's signed announcement, verbatim (the token builds nothing a
        drive must trust); an EKT's delivered CSNs stay in its filter (their drives hold the
        timestamp and do not pull), so an acknowledgement costs no rebuild."""
        mem = self.memory
        self._replies.clear()
        self._serving = _KIND_OF_MODE.get(mem.mode)
        self._pending = sum(1 for p in mem.packages.values() if p.package_body is not None)
        signed = mem.announcement
        if mem.mode is TokenMode.EMPTY or not self._pending or signed is None:
            self._announcement = None
            return
        message = KeysAvailable(mem.token_id, mem.mode, mem.timestamp, signed.csn_count, signed.csn_filter,
                                signed.signature)
        self._announcement = encode(message)

    # --- drive LAN ------------------------------------------------------

    def receive_lan(self, frame: Frame, source: Address, now_us: int) -> Output:
        msg = frame.message
        if isinstance(msg, KeyRequest):
            if not self._within_budget(msg.csn, now_us):
                return Output(events=[AnswerThrottled(msg.csn)])
            return self._serve(msg, frame.sequence, source)
        if isinstance(msg, KeyAck):
            return self._acknowledge(msg, now_us)
        if isinstance(msg, ErrorReport):
            return self._record_error(msg, now_us)
        return Output(events=[Unexpected(msg.TYPE)])

    def _within_budget(self, csn: bytes, now_us: int) -> bool:
        """At most KEY_REQUEST_ANSWERS_PER_CSN_PER_S answers per CSN held per second, and
        KEY_REQUEST_UNKNOWN_ANSWERS_PER_S for all other CSNs together: a spoofed source gets
        no more out of the token than that, whatever it sends."""
        window = now_us // 1_000_000
        if window != self._window_s:
            self._window_s = window
            self._answers.clear()
        held = csn in self.memory.packages
        slot = csn if held else None
        budget = KEY_REQUEST_ANSWERS_PER_CSN_PER_S if held else KEY_REQUEST_UNKNOWN_ANSWERS_PER_S
        used = self._answers.get(slot, 0)
        if used >= budget:
            return False
        self._answers[slot] = used + 1
        return True

    def _serve(self, req: KeyRequest, sequence: int, source: Address) -> Output:
        """The answer is the same for every request for that CSN and kind until the next write
        (or an EKT's erase): its body and event are built once; each reply frames the body
        with the request's sequence, as the protocol wants (docs/PROTOCOL.md)."""
        reply = self._replies.get((req.csn, req.kind))
        if reply is None:
            reply = self._reply(req.csn, req.kind)
        data = frame_body(reply.message_type, reply.body, sequence=sequence, reply=True)
        return Output([Transmit(source, reply.message_type, data)], [reply.event])

    def _reply(self, csn: bytes, kind: KeyKind) -> _Reply:
        held = self.memory.packages.get(csn)
        reason = None
        if held is None:
            reason = NoPackageReason.NOT_HELD
        elif self._serving is not kind:
            reason = NoPackageReason.WRONG_KIND
        elif held.package_body is None:
            reason = NoPackageReason.DELIVERED
        if reason is not None:
            reply = _Reply(MessageType.NO_PACKAGE, encode_body(NoPackage(csn, kind, reason)), NothingToServe(csn, reason))
        else:
            assert held is not None and held.package_body is not None
            reply = _Reply(_PACKAGE_TYPE[kind], held.package_body, PackageServed(csn, kind))
        if held is not None:  # CSNs not held are not remembered: they are anyone's to invent
            self._replies[(csn, kind)] = reply
        return reply

    def _acknowledge(self, ack: KeyAck, now_us: int) -> Output:
        held = self.memory.packages.get(ack.csn)
        if held is None or ack.timestamp != self.memory.timestamp:
            return Output(events=[AckRejected(ack.csn, "not a package this token holds")])
        if envelope.receipt_hash(ack.receipt) != held.receipt_hash:
            return Output(events=[AckRejected(ack.csn, "receipt does not match the package")])
        if held.acknowledged_at:
            return Output(events=[Acknowledged(ack.csn, ack.kind, erased=held.package_body is None)])
        held.acknowledged_at = now_us
        erased = self.memory.mode is TokenMode.EKT
        if erased:
            # An EKT erases a device-key package once delivered, keeping the CSN.
            held.package_body = None
            self._pending -= 1
            self._replies.pop((ack.csn, KeyKind.DEVICE), None)
        return Output(events=[Acknowledged(ack.csn, ack.kind, erased)], persist=True)

    def _record_error(self, report: ErrorReport, now_us: int) -> Output:
        """Recorded only if it is about the write the token holds, for a CSN of that write,
        and MAC'd under that drive's report key; one slot per (CSN, code), found in O(1)."""
        held = self.memory.packages.get(report.csn)
        if held is None:
            return Output(events=[ErrorIgnored(report.csn, "the token holds no package for that CSN")])
        if report.timestamp != self.memory.timestamp:
            return Output(events=[ErrorIgnored(report.csn, "about another write than the one the token holds")])
        if not held.report_key or not reportauth.verify_report_mac(
            held.report_key, report.csn, report.error_code, report.key_id, report.timestamp, report.mac
        ):
            return Output(events=[ErrorIgnored(report.csn, "its MAC does not verify under the drive's report key")])
        slot = (report.csn, report.error_code)
        known = self.memory.errors.get(slot)
        if known is not None and known.key_id == report.key_id:
            return Output()  # already held; the LED is already flashing
        error = TokenError(report.csn, report.error_code, report.key_id, now_us)
        self.memory.errors[slot] = error
        return Output(events=[ErrorRecorded(error)], persist=True)

    # --- reset button ---------------------------------------------------

    def press_reset(self) -> Output:
        """Reset held for 3 s: broadcast CLEAR_KEYS for every CSN the token holds."""
        auths = [a for p in self.memory.packages.values() for a in p.clear_authorizations]
        chunks = [auths[i : i + CLEAR_ENTRIES_PER_DATAGRAM] for i in range(0, len(auths), CLEAR_ENTRIES_PER_DATAGRAM)]
        sends = [
            Transmit(BROADCAST, MessageType.CLEAR_KEYS, encode(ClearKeys(self.memory.token_id, i, len(chunks), tuple(c))))
            for i, c in enumerate(chunks)
        ]
        return Output(sends, [ResetPressed(len(self.memory.packages))])

    def wipe(self) -> Output:
        """Re-inserted with reset held: keys, CSNs and errors are gone."""
        self.memory.wipe()
        self._rebuild_announcement()
        return Output(events=[Wiped()], persist=True)

    # --- management channel ---------------------------------------------

    def receive_management(self, frame: Frame, now_us: int, *, local: bool = False) -> Output:
        """A decoded frame (an air-gap image, tests): handled from its raw octets like any other."""
        return self.receive_management_bytes(frame.raw, now_us, local=local)

    def receive_management_bytes(self, data: bytes, now_us: int, *, local: bool = False) -> Output:
        """A whole management frame as it arrived: it is decrypted (authenticated) and its
        replay counter checked before the body is parsed, so a forgery never costs a parse.

        A token whose memory has no counter (blank, or its state directory moved aside)
        answers every request but RESYNC with a sealed MGMT_CHALLENGE. ``local``: an image
        loaded at the token by the holder of its secret (air gap) sets the counter itself.
        Raises DecodeError only for an authentic frame whose body does not decode."""
        try:
            opened = authenticate(data, self._secret)
        except (AuthenticationError, DecodeError) as exc:
            return self._refuse(_sequence_of(data), 0, MgmtStatus.AUTH_FAILED, str(exc))
        info, counter = opened.info, opened.counter
        if info.message_type is MessageType.RESYNC:
            return self._resync(opened.frame(), counter)
        if not self.memory.counter_set and not local:
            return self._challenge_reply(info.sequence, counter)
        if self.memory.counter_set:
            refused = self._replayed(info.sequence, counter)
            if refused is not None:
                return refused
        return self._accepted(opened.frame(), counter, opened.body)

    def _replayed(self, sequence: int, counter: int) -> Output | None:
        if counter <= self.memory.mgmt_counter:
            return self._refuse(
                sequence, counter, MgmtStatus.REPLAYED,
                f"counter {counter} is not above the last accepted {self.memory.mgmt_counter}: a replay",
            )
        return None

    def _challenge_reply(self, sequence: int, counter: int) -> Output:
        """No counter to check against: nothing is applied; the KMS must RESYNC with this
        challenge (kept until used, so it is fresh for each resync and never seen in clear)."""
        if self._challenge is None:
            self._challenge = os.urandom(CHALLENGE_SIZE)
        reply = encode_authenticated(MgmtChallenge(self._challenge), secret=self._secret, counter=counter,
                                     sequence=sequence, reply=True)
        return Output(events=[ChallengeIssued(counter)], reply=reply)

    def _resync(self, frame: Frame, counter: int) -> Output:
        msg = frame.message
        assert isinstance(msg, Resync)
        if self._challenge is None or not hmac.compare_digest(msg.challenge, self._challenge):
            return self._refuse(
                frame.sequence, counter, MgmtStatus.REPLAYED,
                "RESYNC does not carry this token's current challenge (a replay, or the token restarted): "
                "send any request to get a new one",
            )
        self._challenge = None
        self.memory.mgmt_counter = counter
        self.memory.counter_set = True
        reply = encode_authenticated(MgmtResult(MgmtStatus.OK, f"replay counter set to {counter}"),
                                     secret=self._secret, counter=counter, sequence=frame.sequence, reply=True)
        return Output(events=[CounterResynced(counter)], persist=True, reply=reply)

    def _accepted(self, frame: Frame, counter: int, body: bytes) -> Output:
        self.memory.mgmt_counter = counter
        self.memory.counter_set = True
        self._challenge = None
        if isinstance(frame.message, (WriteEkt, WriteOkt)):
            self.memory.last_write_counter = counter
        out, reply_message = self._management(frame.message, body)  # type: ignore[arg-type]
        out.persist = True
        out.reply = encode_authenticated(
            reply_message, secret=self._secret, counter=counter, sequence=frame.sequence, reply=True
        )
        return out

    def _refuse(self, sequence: int, counter: int, status: MgmtStatus, why: str) -> Output:
        # The reply is sealed with our secret: a peer holding another secret learns nothing from it.
        reply = encode_authenticated(
            MgmtResult(status, why), secret=self._secret, counter=counter, sequence=sequence, reply=True
        )
        return Output(events=[ManagementRefused(status, why)], reply=reply)

    def _management(self, msg: Message, body: bytes) -> tuple[Output, Message]:
        out = Output()
        if isinstance(msg, WriteEkt):
            self._write(msg, body)
            result: Message = MgmtResult(MgmtStatus.OK, f"EKT written: device keys for {len(msg.entries)} drive(s)")
            out.events.append(Written(TokenMode.EKT, msg.timestamp, len(msg.entries)))
        elif isinstance(msg, WriteOkt):
            self._write(msg, body)
            result = MgmtResult(MgmtStatus.OK, f"OKT written: media keys of pool {msg.pool!r} for {len(msg.entries)} drive(s)")
            out.events.append(Written(TokenMode.OKT, msg.okt_timestamp, len(msg.entries)))
        elif isinstance(msg, ReadStatus):
            result = self.status()
        elif isinstance(msg, ClearError):
            count = len(self.memory.errors)
            self.memory.errors.clear()
            result = MgmtResult(MgmtStatus.OK, f"cleared {count} error(s)")
            out.events.append(ErrorsCleared(count))
        else:
            result = MgmtResult(MgmtStatus.BAD_REQUEST, f"{type(msg).__name__} is not a management request")
            out.events.append(Unexpected(msg.TYPE))
        if isinstance(msg, (WriteEkt, WriteOkt)):
            announce = self.announcement()
            if announce is not None:
                out.sends.append(announce)
        return out, result

    def _write(self, message: WriteEkt | WriteOkt, body: bytes) -> None:
        """A write replaces the token's contents and clears its errors, as in the seed. The
        packages are kept as the octets the KMS sealed (``body``: the decrypted request)."""
        self.memory.load_write(message, body)
        self._rebuild_announcement()


def _sequence_of(data: bytes) -> int:
    """The sequence a refusal answers: the request's, when its header decodes."""
    try:
        return decode_header(data).sequence
    except DecodeError:
        return 0
