"""The drive daemon's asyncio shell: one process hosts one drive or thousands.

Every drive has its own static address: it receives requests and replies there, and serves its
Virtual Operator Panel and an iSCSI target (its SCSI side, one tape LUN) there, over sockets of
its own or over sockets shared by every drive of the host (drive_daemon/sockets.py). One
broadcast listener per process hears the drive LAN, decodes each datagram once and hands it
to every drive.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from netcheck.limits import ConnectionGate, ReasonLog, read_bounded

from protocol import (
    DecodeError,
    DecodeReason,
    Frame,
    Message,
    Transmit,
    VopChallengeRequest,
    VopLoad,
    VopResetDrive,
    VopResult,
    VopUnload,
    VopStatusRequest,
    decode,
    decode_header,
    encode,
    reportauth,
)
from protocol.constants import (
    DRIVE_LAN_PORT,
    DRIVE_PORT,
    HEADER_SIZE,
    LOOPBACK_BROADCAST,
    ISCSI_PORT,
    VOP_PORT,
    MessageType,
    VopStatusCode,
    drive_iqn,
)

from protocol.layouts import body_cap
from protocol.sense import SenseProfile

from .credential import ResetGate
from .deadlines import Deadlines
from .drive import Drive, Event, Output
from .errors import BindError
from .iscsi import IscsiConfig, IscsiPortal
from .sockets import Datagrams, DriveEndpoints, DriveLink, DriveSockets, SocketMode, bind_errors, host_sockets
from .ssc import SscDevice
from .tape import TapeCheck, TapeSession

if TYPE_CHECKING:
    from events import EventPublisher
from protocol.manufacturing import ManufacturedDrive
from .nvram_store import NvramStore
from .persist import HostNvram, StoreFactory

log = logging.getLogger("t10k.drive")

#: Drive events published as alerts (everything else is state).
ALERTS = {"DecryptionFailed", "MissingKeyReported", "KeysCleared", "ClearRefused", "OfferRefused", "PullGaveUp"}

Tap = Callable[[str, str, tuple[str, int], tuple[str, int], bytes], None]
EventSink = Callable[[bytes, Event], None]


@dataclass(frozen=True)
class DriveHostConfig:
    state_dir: Path
    #: Address the broadcast listener binds: the LAN's broadcast address, or 0.0.0.0.
    listen_broadcast: str = LOOPBACK_BROADCAST
    lan_port: int = DRIVE_LAN_PORT
    drive_port: int = DRIVE_PORT
    vop_port: int = VOP_PORT
    vop_backlog: int = 16
    #: A VOP connection gets its request's header, then its body, within this each.
    vop_timeout_s: float = 10.0
    #: VOP connections one address may hold on one drive, one drive's listener in all,
    #: and every drive of this host together (excess closed at once, counted).
    vop_per_peer: int = 4
    vop_total: int = 16
    vop_host_total: int = 4096
    #: Directory of cartridges (VOLSER.tape) the drives can load; default STATE/library.
    library: Path | None = None
    sense_profile: SenseProfile = SenseProfile.T10000
    #: The drive's SCSI side: an iSCSI target at (its ip, iscsi_port), one LUN.
    iscsi_port: int = ISCSI_PORT
    #: (name, secret) initiators must prove with CHAP; None: no authentication
    iscsi_chap: tuple[str, str] | None = None
    #: The host's service credential (32 octets): VOP Reset Drive needs it; None: resets refused.
    service_credential: bytes | None = field(default=None, repr=False)
    #: Sockets of each drive's own (per-drive), one set for every drive (shared), or per-drive while
    #: they fit under the open-file limit (auto): drive_daemon/sockets.py.
    sockets: SocketMode = SocketMode.AUTO

    @property
    def library_dir(self) -> Path:
        return self.library or self.state_dir / "library"


@dataclass
class Counters:
    decode_errors: collections.Counter[str] = field(default_factory=collections.Counter)
    events: collections.Counter[str] = field(default_factory=collections.Counter)
    datagrams_in: int = 0
    datagrams_out: int = 0
    #: VOP connections refused or ended early, per reason (caps, timeouts, decode errors).
    vop_refused: collections.Counter[str] = field(default_factory=collections.Counter)
    #: NVRAM writes that failed (their replies were not sent).
    nvram_failures: int = 0
    #: Shared sockets: datagrams dropped and connections closed for want of a drive at their
    #: address, per service (udp, vop, iscsi).
    unrouted: collections.Counter[str] = field(default_factory=collections.Counter)
    #: Datagrams a drive sent that its socket did not take (closed, send queue full, send error).
    send_dropped: int = 0




class HostedDrive:
    """One drive's sockets, timer and persistence around its sans-I/O :class:`Drive`."""

    def __init__(self, host: DriveHost, made: ManufacturedDrive, ip: str) -> None:
        self.host, self.made, self.ip = host, made, ip
        self.drive = Drive(made.csn, made.pckey, host.nvram.loaded[made.csn], encrypting=made.encrypting)
        #: NVRAM writes, and the sends queued behind them (per-drive order).
        self.nvram = host.nvram.drive(made, self.send)
        self.tape = TapeSession(self.drive, host.config.library_dir, host.config.sense_profile)
        self.ssc = SscDevice(self.tape, model=made.model)
        self.link: DriveLink | None = None
        self.iscsi: IscsiPortal | None = None
        #: The drive's next deadline, held in the host's :class:`Deadlines` (None: none).
        self._timer_due: float | None = None
        self._vop_gate = ConnectionGate(host.config.vop_per_peer, host.config.vop_total)
        credential = host.config.service_credential
        self._reset_key = reportauth.vop_reset_key(credential, made.csn) if credential is not None else None
        #: A stopped drive (powered off) hears nothing and sends nothing.
        self.powered = False

    @property
    def csn(self) -> bytes:
        return self.made.csn

    async def start(self) -> None:
        config = self.host.config
        self.powered = True
        self.iscsi = IscsiPortal(
            IscsiConfig(target_name=drive_iqn(self.csn), port=config.iscsi_port, chap=config.iscsi_chap),
            self.ssc, host=self.ip, on_output=self._scsi_output,
            tap=lambda direction, src, dst, data: self.host.tap(direction, "tcp", src, dst, data),
        )
        self.link = await self.host.sockets.open(
            DriveEndpoints(self.ip, f"drive {self.csn.hex()}", self._unicast, self._vop, self.iscsi))

    async def stop(self) -> None:
        self.powered = False
        self._timer_due = None  # its entry in the host's deadlines is skipped when it comes up
        if self.link is not None:
            await self.link.close()
            self.link = None
        self.iscsi = None
        if self.tape.cartridge is not None:
            self.tape.cartridge.close()

    def _unicast(self, data: bytes, addr: tuple[str, int]) -> None:
        self.host.counters.datagrams_in += 1
        self.host.tap_in(addr, (self.ip, self.host.config.drive_port), data)
        frame = self.host.decode_counted(data, addr)
        if frame is not None:
            self.deliver(frame, addr)

    def deliver(self, frame: Frame, addr: tuple[str, int]) -> None:
        if self.powered:
            self.apply(self.drive.receive(frame, addr, time.time()))

    def apply(self, out: Output) -> None:
        if not (out.sends or out.events or out.persist):  # e.g. a repeated announcement, to each of 10,000
            self._reschedule()
            return
        if out.persist or self.nvram.busy:
            # Serialised now (consistent), committed with other drives' (drive_daemon/persist.py); the
            # sends (a KEY_ACK says "stored") go once durable, later sends queue behind (per-drive order).
            self.nvram.push(self.drive.nvram if out.persist else None, list(out.sends))
        else:
            for t in out.sends:
                self.send(t)
        debug = log.isEnabledFor(logging.DEBUG)
        for event in out.events:
            self.host.counters.events[type(event).__name__] += 1
            if debug:
                log.debug("drive %s: %s", self.csn.hex(), event)
            for sink in self.host.sinks:
                sink(self.csn, event)
        if self.host.publisher is not None and (out.persist or out.events):
            self.publish(out.events)
        self._reschedule()

    def publish(self, events: list[Event]) -> None:
        """The drive's VOP fields (retained, coalesced) and the events worth an alert."""
        from events import drive_event, drive_state
        from protocol.pcap import describe

        from .vop import vop_fields

        publisher, site = self.host.publisher, self.host.site
        assert publisher is not None
        publisher.state(drive_state(site, self.csn), lambda: vop_fields(self.drive.vop_status(time.time())) | {
            "ip": self.ip})
        for event in events:
            if type(event).__name__ in ALERTS:
                publisher.event(drive_event(site, self.csn),
                                {"type": type(event).__name__, "csn": self.csn.hex(), "ip": self.ip} | describe(event))

    def send(self, t: Transmit) -> None:
        if not self.powered or self.link is None:
            return
        if not self.link.send(t.data, t.to):
            self.host.counters.send_dropped += 1  # closed, a full send queue, or a send error
            return
        self.host.counters.datagrams_out += 1
        self.host.tap_out((self.ip, self.host.config.drive_port), t.to, t.data)

    def _reschedule(self) -> None:
        deadline = self.drive.next_deadline() if self.powered else None
        if deadline == self._timer_due:
            return  # set for this deadline already: a repeated announcement changed nothing
        self._timer_due = deadline
        if deadline is not None:
            self.host.deadlines.add(deadline, self)

    def deadline_current(self, due: float) -> bool:
        return due == self._timer_due

    def deadline_reached(self, now: float) -> None:
        self._timer_due = None
        self.apply(self.drive.tick(now))

    def power_cycle(self) -> None:
        self.tape.power_off()
        self.apply(self.drive.power_cycle())
        if self.tape.cartridge is not None:
            self.drive.load_tape()  # the cartridge is still in the drive after power returns
        self.ssc.power_on()  # every initiator sees a power-on UNIT ATTENTION

    def _scsi_output(self, output: object) -> None:
        """What a SCSI command made the drive do (a missing key reported to the token...)."""
        if isinstance(output, Output):
            self.apply(output)

    async def _vop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        local = (self.ip, self.host.config.vop_port)
        refused = self.host.vop_gate.admit(peer[0])
        if refused is None:
            refused = self._vop_gate.admit(peer[0])
            if refused is not None:
                self.host.vop_gate.release(peer[0])
        if refused is not None:  # over a cap: closed at once, counted
            self.host.vop_reasons.note(refused, f"drive {self.csn.hex()}: VOP connection from {peer[0]} refused")
            writer.close()
            return
        gate = ResetGate(self.csn, self._reset_key)
        try:
            # One request per connection, or a challenge request and the reset answering it.
            for _ in range(2):
                request = await self._read_vop(reader, peer, local)
                msg = request.message
                if isinstance(msg, VopChallengeRequest):
                    reply: Message = gate.challenge()
                elif isinstance(msg, VopStatusRequest):
                    reply = self.drive.vop_status(time.time())
                elif isinstance(msg, VopResetDrive):
                    refused = gate.refusal(msg)
                    if refused is None:
                        self.apply(self.drive.vop_reset())
                        reply = VopResult(VopStatusCode.OK, "drive reset: device and media keys cleared")
                    else:
                        self.host.vop_reasons.note("reset_refused", f"drive {self.csn.hex()}: VOP reset from "
                                                   f"{peer[0]} refused: {refused}")
                        reply = VopResult(VopStatusCode.REFUSED, refused)
                elif isinstance(msg, VopLoad):
                    try:
                        self.tape.load(msg.volser)
                        reply = VopResult(VopStatusCode.OK, f"{msg.volser} loaded")
                    except TapeCheck as exc:
                        reply = VopResult(VopStatusCode.REFUSED, exc.detail)
                elif isinstance(msg, VopUnload):
                    taken = Output()
                    volser = self.tape.remove(taken)
                    self.apply(taken)  # keys held while it was loaded are committed now
                    reply = (VopResult(VopStatusCode.OK, f"{volser} unloaded") if volser
                             else VopResult(VopStatusCode.REFUSED, "no cartridge in the drive"))
                else:
                    reply = VopResult(VopStatusCode.BAD_REQUEST, f"{msg.TYPE.name} is not a VOP request")
                out = encode(reply, sequence=request.sequence, reply=True)
                writer.write(out)
                await writer.drain()
                self.host.tap_out(local, peer, out, "tcp")
                if not isinstance(msg, VopChallengeRequest):
                    break
        except DecodeError as exc:
            self.host.counters.decode_errors[exc.reason.name] += 1
            self.host.vop_reasons.note(exc.reason.name, f"drive {self.csn.hex()}: VOP request from {peer[0]}: {exc}")
            writer.write(encode(VopResult(VopStatusCode.BAD_REQUEST, str(exc)), reply=True))
        except (asyncio.TimeoutError, TimeoutError):
            self.host.vop_reasons.note("idle_timeout", f"drive {self.csn.hex()}: VOP connection from {peer[0]} timed out")
        except (asyncio.IncompleteReadError, ConnectionError):
            self.host.vop_reasons.note("cut_short", f"drive {self.csn.hex()}: VOP connection from {peer[0]} cut short")
        finally:
            self._vop_gate.release(peer[0])
            self.host.vop_gate.release(peer[0])
            writer.close()


    async def _read_vop(self, reader: asyncio.StreamReader, peer: tuple[str, int], local: tuple[str, int]) -> Frame:
        cfg = self.host.config
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), cfg.vop_timeout_s)
        info = decode_header(header)
        if info.body_length > body_cap(info.message_type):  # refused from the header alone
            raise DecodeError(DecodeReason.TOO_LARGE, f"{info.message_type.name} body of {info.body_length} "
                              f"octets exceeds its cap of {body_cap(info.message_type)}")
        data = header + await read_bounded(reader, info.remaining, cfg.vop_timeout_s)
        self.host.tap_in(peer, local, data, "tcp")
        return decode(data)


class DriveHost:
    """Hosts drives in one process; ``async with DriveHost(cfg, [(made, ip), ...])``."""

    def __init__(self, config: DriveHostConfig, drives: list[tuple[ManufacturedDrive, str]], *, tap: Tap | None = None,
                 events: EventPublisher | None = None, site: str = "lab",
                 nvram_store: StoreFactory = NvramStore) -> None:
        self.config = config
        self.publisher = events
        self.site = site
        self.counters = Counters()
        #: Every drive's NVRAM, loaded here from the host's one store (STATE/nvram.sqlite3).
        self.nvram = HostNvram(config.state_dir, [made for made, _ in drives], self.counters, nvram_store)
        self.sinks: list[EventSink] = []
        self._tap = tap
        #: Every drive's next pull or retry, behind one loop timer.
        self.deadlines = Deadlines()
        self.drives = {made.csn: HostedDrive(self, made, ip) for made, ip in drives}
        self._broadcast: asyncio.DatagramTransport | None = None
        self.unrouted_reasons = ReasonLog(log, self.counters.unrouted)
        self.sockets: DriveSockets = host_sockets(config.sockets, len(self.drives), config.drive_port, config.vop_port,
                                                  config.iscsi_port, config.vop_backlog, self._unrouted)
        self.vop_gate = ConnectionGate(config.vop_host_total, config.vop_host_total)
        self.vop_reasons = ReasonLog(log, self.counters.vop_refused)
        self.lan_reasons = ReasonLog(log, collections.Counter())  # counted in decode_errors

    def subscribe(self, sink: EventSink) -> None:
        self.sinks.append(sink)

    async def __aenter__(self) -> DriveHost:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            with bind_errors(self.config.listen_broadcast, self.config.lan_port, "udp", "the drive LAN listener"):
                sock.bind((self.config.listen_broadcast, self.config.lan_port))
        except BaseException:
            sock.close()
            raise
        self._broadcast, _ = await loop.create_datagram_endpoint(lambda: Datagrams(self._lan), sock=sock)
        log.info("drive host: %s sockets (%s)", self.sockets.mode.value, self.sockets.reason)
        try:
            await self.sockets.start()
            for hosted in self.drives.values():
                await hosted.start()
        except (OSError, BindError):
            await self.stop()
            raise
        log.info("drive host: %d drive(s), LAN %s:%d", len(self.drives), self.config.listen_broadcast, self.config.lan_port)
        if self.publisher is not None:
            for hosted in self.drives.values():
                hosted.publish([])

    async def stop(self) -> None:
        for hosted in self.drives.values():
            await hosted.stop()
        self.deadlines.close()
        await self.sockets.stop()
        if self._broadcast:
            self._broadcast.close()
        await self.nvram.close()

    async def flush(self) -> None:
        """Wait until every NVRAM write started so far is on disk."""
        await self.nvram.flush()

    @property
    def socket_mode(self) -> SocketMode:
        return self.sockets.mode

    def _unrouted(self, service: str, detail: str) -> None:
        self.unrouted_reasons.note(service, f"drive host: no drive at the address: {detail} dropped")

    def decode_counted(self, data: bytes, addr: tuple[str, int]) -> Frame | None:
        try:
            return decode(data)
        except DecodeError as exc:
            self.counters.decode_errors[exc.reason.name] += 1
            self.lan_reasons.note(exc.reason.name, f"drive host: dropped datagram from {addr[0]}:{addr[1]}: {exc}")
            return None

    def _lan(self, data: bytes, addr: tuple[str, int]) -> None:
        self.counters.datagrams_in += 1
        self.tap_in(addr, (self.config.listen_broadcast, self.config.lan_port), data)
        frame = self.decode_counted(data, addr)
        if frame is None:
            return
        if frame.message.TYPE not in (MessageType.KEYS_AVAILABLE, MessageType.CLEAR_KEYS):
            self.counters.events["UnexpectedBroadcast"] += 1
            return
        for hosted in self.drives.values():
            hosted.deliver(frame, addr)

    @property
    def has_tap(self) -> bool:
        return self._tap is not None

    def tap(self, direction: str, transport: str, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        if self._tap:
            self._tap(direction, transport, src, dst, data)

    def tap_in(self, src: tuple[str, int], dst: tuple[str, int], data: bytes, transport: str = "udp") -> None:
        if self._tap:
            self._tap("in", transport, src, dst, data)

    def tap_out(self, src: tuple[str, int], dst: tuple[str, int], data: bytes, transport: str = "udp") -> None:
        if self._tap:
            self._tap("out", transport, src, dst, data)
