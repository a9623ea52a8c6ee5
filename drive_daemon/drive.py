"""The Drive, sans-I/O: decoded messages and the time in, bytes to send and events out.

Rules from the seed that live here:
- a key package is accepted only if its timestamp is later than the one stored
  (or equal, for a drive that lost its media keys to a power cycle);
- media keys are volatile, device keys and the OKT timestamp are not;
- keys that arrive with a tape loaded are held and committed at unload;
- new device keys are held until media keys newer than them arrive (Scenario 5);
- a package this drive cannot decrypt is reported to the token (out of sync).

And from protocol version 3 (issue 13): a drive holding the KMS public key acts only on
announcements the KMS signed; one without it (factory, or after a reset) takes an
offer as a hint that never blocks another; packages authenticate themselves, so an
authentic newer one is taken whether or not it was asked for, and an unsolicited one
that does not decrypt is dropped without a word; NO_PACKAGE only delays, for a bound.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from protocol import (
    Address,
    ClearKeys,
    DeviceKeyPackage,
    ErrorReport,
    Frame,
    KeyAck,
    KeyRequest,
    KeysAvailable,
    MediaKeyPackage,
    NoPackage,
    Transmit,
    VopStatus,
    encode,
    envelope,
    reportauth,
)
from protocol.constants import (
    ANNOUNCE_REPEATS_S,
    MAX_PULL_ATTEMPTS,
    MAX_PULL_SOURCES,
    TOKEN_LAN_PORT,
    EncryptionLed,
    ErrorCode,
    KeyKind,
    MessageType,
    NoPackageReason,
    TokenMode,
    Wrapping,
)
from protocol.errors import UnwrapError
from protocol.ids import ZERO_KEY_ID

from .drive_events import (  # noqa: F401 - re-exported: their home before drive_events.py
    AnnouncementRejected,
    ClearRefused,
    DecryptionFailed,
    DeviceKeysAccepted,
    Event,
    Ignored,
    KeysCleared,
    MediaKeysAccepted,
    MissingKeyReported,
    OfferRefused,
    PackageDropped,
    PullGaveUp,
    PullScheduled,
)
from .nvram import Nvram
from .pulls import Pull, SkipList, pull_spread, retry_delay  # noqa: F401 - pull_spread, retry_delay re-exported

#: A drive says KEY_ACK again for an EKT still announcing its package at most this often: the
#: repeats of a write's announcement (ANNOUNCE_REPEATS_S) come sooner than a lost ACK needs.
ACK_AGAIN_S = sum(ANNOUNCE_REPEATS_S)

#: For this long after an I/O a drive holding keys shows its LED flashing red.
IO_LED_S = 1.0


@dataclass
class Output:
    sends: list[Transmit] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    #: NVRAM changed: the shell must write it.
    persist: bool = False


@dataclass
class MediaKeySet:
    okt_timestamp: int
    write_key_id: bytes
    keys: dict[bytes, bytes]
    #: The token these keys came from: a missing key is reported there.
    source: str = ""


#: What an announcement of each token mode offers.
_OFFERED = {TokenMode.EKT: KeyKind.DEVICE, TokenMode.OKT: KeyKind.MEDIA}


class Drive:
    def __init__(
        self,
        csn: bytes,
        pckey: bytes,
        nvram: Nvram | None = None,
        *,
        encrypting: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        self.csn = csn
        self._pckey = pckey
        self.nvram = nvram if nvram is not None else Nvram()
        self.encrypting = encrypting
        self._rng = rng or random.Random()
        # Volatile memory: lost at power off.
        self.media: MediaKeySet | None = None
        self.held_media: MediaKeySet | None = None
        self.tape_loaded = False
        self._pulls: dict[KeyKind, Pull] = {}
        self._sequence = self._rng.randrange(2**31)
        self._skip = SkipList()
        #: (timestamp, receipt, when last acknowledged) of the newest device-key package taken.
        self._last_receipt: tuple[int, bytes, float] | None = None
        self.last_io = float("-inf")
        #: The unwrapper of the current device key (its HKDF is done once per device key, not per package).
        self._wrapper: tuple[bytes, envelope.MediaKeyWrapper] | None = None

    # --- what the drive shows ------------------------------------------

    @property
    def holding_keys(self) -> bool:
        if self.held_media is not None:
            return True
        return self.media is not None and self.nvram.device_key_timestamp > self.nvram.okt_timestamp

    @property
    def led(self) -> EncryptionLed:
        return self.led_at(None)

    def led_at(self, now: float | None) -> EncryptionLed:
        """Holding keys: flashing red while doing I/O (the last second), solid amber otherwise."""
        if self.nvram.reset:
            return EncryptionLed.FLASHING_GREEN
        if self.nvram.device_key is None:
            return EncryptionLed.GREEN
        if self.media is not None and not self.holding_keys:
            return EncryptionLed.RED
        if self.holding_keys and self.media is not None and now is not None and now - self.last_io < IO_LED_S:
            return EncryptionLed.FLASHING_RED
        return EncryptionLed.AMBER

    def vop_status(self, now: float | None = None) -> VopStatus:
        enabled = self.nvram.device_key is not None
        return VopStatus(
            csn=self.csn,
            encrypting_model=self.encrypting,
            led=self.led_at(now),
            encryption_enabled=enabled,
            reset=self.nvram.reset,
            need_okt=enabled and self.media is None and self.held_media is None,
            holding_keys=self.holding_keys,
            okt_timestamp=self.nvram.okt_timestamp,
            device_key_timestamp=self.nvram.device_key_timestamp,
            media_key_count=len(self.media.keys) if self.media else 0,
            write_key_id=self.media.write_key_id if self.media else ZERO_KEY_ID,
        )

    def next_deadline(self) -> float | None:
        due = None
        for pull in self._pulls.values():  # at most one per kind: a loop, not min() over a generator
            if due is None or pull.due < due:
                due = pull.due
        return due

    # --- input ----------------------------------------------------------

    def receive(self, frame: Frame, source: Address, now: float) -> Output:
        msg = frame.message
        self._skip.now = now
        if not self.encrypting:
            return Output(events=[Ignored(msg.TYPE, "a non-encrypting drive takes no keys")])
        if isinstance(msg, KeysAvailable):
            return self._offer(msg, source[0], now)
        if isinstance(msg, DeviceKeyPackage):
            return self._device_package(msg, source[0], now)
        if isinstance(msg, MediaKeyPackage):
            return self._media_package(msg, source[0], now)
        if isinstance(msg, NoPackage):
            return self._no_package(msg, frame.sequence, source[0])
        if isinstance(msg, ClearKeys):
            return self._clear(msg)
        return Output(events=[Ignored(msg.TYPE, "not a message a drive takes")])

    def tick(self, now: float) -> Output:
        """Send due key requests; retry lost ones with backoff; give up after a bound."""
        out = Output()
        self._skip.now = now
        for kind, pull in list(self._pulls.items()):
            if pull.due > now:
                continue
            if pull.attempt >= MAX_PULL_ATTEMPTS or not pull.sources:
                del self._pulls[kind]
                out.events.append(PullGaveUp(kind, pull.timestamp))
                continue
            host = pull.sources[pull.attempt % len(pull.sources)]
            self._sequence = (self._sequence + 1) % 2**32
            pull.sequence = self._sequence
            held = self.nvram.device_key_timestamp if kind is KeyKind.DEVICE else self.nvram.okt_timestamp
            data = encode(KeyRequest(self.csn, kind, held), sequence=pull.sequence)
            out.sends.append(Transmit((host, TOKEN_LAN_PORT), MessageType.KEY_REQUEST, data))
            pull.attempt += 1
            pull.due = now + retry_delay(pull.attempt, pull.spread, self._rng)
        return out

    def power_cycle(self) -> Output:
        """Power off and on: media keys and pending work are gone; NVRAM stays."""
        self.media = self.held_media = None
        self.tape_loaded = False
        self._pulls.clear()
        self._skip.clear()
        self._last_receipt = None
        return Output()

    def vop_reset(self) -> Output:
        return self._reset("VOP Reset Drive")

    def missing_key(self, key_id: bytes, now: float) -> Output:
        """A tape needs a key the drive lacks: tell the token the keys came from (error 00006109)."""
        source = self.media.source if self.media is not None else ""
        event = MissingKeyReported(key_id, source)
        if not source or self.media is None:
            return Output(events=[event])
        report = self._report(ErrorCode.MISSING_KEY, key_id, self.media.okt_timestamp)
        return Output([Transmit((source, TOKEN_LAN_PORT), MessageType.ERROR_REPORT, encode(report))], [event])

    def _report(self, code: ErrorCode, key_id: bytes, write_timestamp: int) -> ErrorReport:
        """An error report about the token write of ``write_timestamp``, MAC'd under the report
        key the KMS gave the token for this drive and that write (the drive derives it from its PCkey)."""
        return reportauth.signed_report(self._pckey, self.csn, code, key_id, write_timestamp)

    def load_tape(self) -> None:
        self.tape_loaded = True

    def unload_tape(self) -> Output:
        """Keys held while the tape was loaded go to the encryption engine now."""
        self.tape_loaded = False
        if self.held_media is None:
            return Output()
        self.media, self.held_media = self.held_media, None
        return Output(events=[MediaKeysAccepted(self.media.okt_timestamp, len(self.media.keys), False)])

    # --- offers ---------------------------------------------------------

    def _offer(self, offer: KeysAvailable, host: str, now: float) -> Output:
        if self.csn not in offer.csn_filter:
            return Output()
        nv = self.nvram
        hint = nv.kms_public_key is None
        if not hint and not envelope.verify_announcement(nv.kms_public_key, offer):  # type: ignore[arg-type]
            return Output(events=[AnnouncementRejected(offer.mode, offer.timestamp, host)])
        in_flight = self._pulls.get(_OFFERED.get(offer.mode))  # type: ignore[arg-type]
        if in_flight is not None and in_flight.timestamp == offer.timestamp and in_flight.hint == hint \
                and host in in_flight.sources:
            return Output()  # the write being pulled, announced again (tokens repeat it): nothing new
        if offer.mode is TokenMode.EKT:
            kind = KeyKind.DEVICE
            if offer.timestamp == nv.device_key_timestamp and self._last_receipt and self._last_receipt[0] == offer.timestamp:
                # Our KEY_ACK may have been lost: the token still announces a package we hold. Say so
                # again, unless we just did (a write's announcement is repeated within ACK_AGAIN_S).
                stamp, receipt, acked_at = self._last_receipt
                if now - acked_at < ACK_AGAIN_S:
                    return Output()
                self._last_receipt = (stamp, receipt, now)
                ack = KeyAck(self.csn, kind, offer.timestamp, receipt)
                return Output([Transmit((host, TOKEN_LAN_PORT), MessageType.KEY_ACK, encode(ack))])
            wanted, held = offer.timestamp > nv.device_key_timestamp, nv.device_key_timestamp
        elif offer.mode is TokenMode.OKT:
            kind = KeyKind.MEDIA
            if nv.device_key is None:
                return Output(events=[Ignored(MessageType.KEYS_AVAILABLE, "no device keys: an OKT cannot be used")])
            wanted, held = self._accepts_media(offer.timestamp), max(nv.okt_timestamp, nv.device_key_timestamp)
        else:
            return Output()
        if not wanted:
            if offer.timestamp == held:
                return Output()  # the keys we already hold, re-announced
            return Output(events=[OfferRefused(kind, offer.timestamp, held)])
        if (host, offer.timestamp) in self._skip:
            return Output()
        pull = self._pulls.get(kind)
        if pull is not None and pull.hint and not hint:
            del self._pulls[kind]  # the drive can verify now: what hints said counts for nothing
            pull = None
        if pull is not None and (pull.timestamp == offer.timestamp or hint):
            # A redundant token offering the same keys; or, unverified, one more place to ask:
            # a hint's timestamp never blocks another offer, it can only add a source.
            if host not in pull.sources and len(pull.sources) < MAX_PULL_SOURCES:
                pull.sources.append(host)
            return Output()
        if pull is not None and pull.timestamp > offer.timestamp:
            return Output()
        spread = pull_spread(offer.csn_count)
        due = now + self._rng.uniform(0, spread)
        self._pulls[kind] = Pull(kind, offer.timestamp, [host], due, hint=hint, spread=spread)
        return Output(events=[PullScheduled(kind, offer.timestamp, due)])

    def _accepts_media(self, timestamp: int) -> bool:
        nv = self.nvram
        if timestamp <= nv.device_key_timestamp:
            return False  # media keys older than our device keys (Scenario 5)
        if timestamp > nv.okt_timestamp:
            return True
        # After a power cycle the same mapping is welcome again; a replay to a drive
        # that still holds those keys is not.
        return timestamp == nv.okt_timestamp and self.media is None and self.held_media is None

    def _no_package(self, msg: NoPackage, sequence: int, host: str) -> Output:
        """Advisory: it cannot be authenticated, so it only takes that token out of this pull,
        and only when it answers the request in flight (the sequence echoes it)."""
        pull = self._pulls.get(msg.kind)
        if msg.csn != self.csn or pull is None or host not in pull.sources:
            return Output(events=[Ignored(MessageType.NO_PACKAGE, "no matching request")])
        if pull.attempt == 0 or sequence != pull.sequence:
            return Output(events=[Ignored(MessageType.NO_PACKAGE, "does not answer the request in flight")])
        pull.sources.remove(host)
        if msg.reason is not NoPackageReason.WRONG_KIND:
            self._skip.add((host, pull.timestamp))
        if not pull.sources:
            del self._pulls[msg.kind]
        return Output()

    def _take_pull(self, kind: KeyKind, host: str, csn: bytes) -> Pull | None:
        """The pull this package answers (removed), or None: the package is unsolicited."""
        pull = self._pulls.get(kind)
        if csn != self.csn or pull is None or host not in pull.sources:
            return None
        return self._pulls.pop(kind)

    def _accepted(self, kind: KeyKind, timestamp: int) -> None:
        """An authentic package was taken: a pull for no newer keys is done."""
        pull = self._pulls.get(kind)
        if pull is not None and (pull.hint or pull.timestamp <= timestamp):
            del self._pulls[kind]

    def _failed(self, solicited: bool, kind: KeyKind, timestamp: int, key_id: bytes, host: str, now: float,
                why: str) -> Output:
        """A package that does not decrypt: reported when asked for; dropped in silence when not
        (anyone can send one: a report would reflect it)."""
        if solicited:
            return self._decryption_error(kind, timestamp, key_id, host, now, why)
        return Output(events=[PackageDropped(kind, timestamp, why)])

    # --- packages -------------------------------------------------------

    def _decryption_error(self, kind: KeyKind, timestamp: int, key_id: bytes, host: str, now: float, why: str) -> Output:
        self._skip.add((host, timestamp))
        report = self._report(ErrorCode.KEY_MESSAGE_DECRYPTION, key_id, timestamp)
        return Output(
            [Transmit((host, TOKEN_LAN_PORT), MessageType.ERROR_REPORT, encode(report))],
            [DecryptionFailed(kind, timestamp, why)],
        )

    def _device_package(self, pkg: DeviceKeyPackage, host: str, now: float) -> Output:
        if pkg.csn != self.csn:
            return Output(events=[Ignored(pkg.TYPE, "a package for another CSN")])
        solicited = self._take_pull(KeyKind.DEVICE, host, pkg.csn) is not None
        nv = self.nvram
        if pkg.timestamp <= nv.device_key_timestamp:
            if not solicited:
                return Output(events=[PackageDropped(KeyKind.DEVICE, pkg.timestamp, "not newer than the device keys held")])
            return Output(events=[OfferRefused(KeyKind.DEVICE, pkg.timestamp, nv.device_key_timestamp)])
        if pkg.wrapping is Wrapping.PCKEY:
            if nv.device_key is not None:
                # Scenario 4: "reset drive" chosen for a drive that already has device keys.
                return self._failed(solicited, KeyKind.DEVICE, pkg.timestamp, pkg.device_key_id, host, now,
                                    "package wrapped under the PCkey, but the drive holds device keys")
            secret = self._pckey
        else:
            if nv.device_key is None or pkg.wrapping_key_id != nv.device_key_id:
                return self._failed(solicited, KeyKind.DEVICE, pkg.timestamp, pkg.device_key_id, host, now,
                                    f"package wrapped under device key {pkg.wrapping_key_id.hex()}, "
                                    f"drive holds {nv.device_key_id.hex() if nv.device_key else 'none'}")
            secret = nv.device_key
        try:
            device_key, receipt, kms_public_key = envelope.unwrap_device_key(
                secret, pkg.csn, pkg.timestamp, pkg.device_key_id, pkg.nonce, pkg.wrapped
            )
        except UnwrapError as exc:
            return self._failed(solicited, KeyKind.DEVICE, pkg.timestamp, pkg.device_key_id, host, now, str(exc))
        nv.device_key, nv.device_key_id, nv.device_key_timestamp, nv.reset = device_key, pkg.device_key_id, pkg.timestamp, False
        nv.kms_public_key = kms_public_key
        self._accepted(KeyKind.DEVICE, pkg.timestamp)
        self._last_receipt = (pkg.timestamp, receipt, now)
        self._media_wrapper(device_key)  # derived now, once per device key, not when a pool's OKT is due
        ack = KeyAck(self.csn, KeyKind.DEVICE, pkg.timestamp, receipt)
        return Output(
            [Transmit((host, TOKEN_LAN_PORT), MessageType.KEY_ACK, encode(ack))],
            [DeviceKeysAccepted(pkg.device_key_id, pkg.timestamp, holding=self.holding_keys)],
            persist=True,
        )

    def _media_wrapper(self, device_key: bytes) -> envelope.MediaKeyWrapper:
        if self._wrapper is None or self._wrapper[0] != device_key:
            self._wrapper = (device_key, envelope.MediaKeyWrapper(device_key))
        return self._wrapper[1]

    def _media_package(self, pkg: MediaKeyPackage, host: str, now: float) -> Output:
        if pkg.csn != self.csn:
            return Output(events=[Ignored(pkg.TYPE, "a package for another CSN")])
        solicited = self._take_pull(KeyKind.MEDIA, host, pkg.csn) is not None
        nv = self.nvram
        if not self._accepts_media(pkg.okt_timestamp):
            if not solicited:
                return Output(events=[PackageDropped(KeyKind.MEDIA, pkg.okt_timestamp, "not newer than the media keys held")])
            return Output(events=[OfferRefused(KeyKind.MEDIA, pkg.okt_timestamp, max(nv.okt_timestamp, nv.device_key_timestamp))])
        if nv.device_key is None or pkg.device_key_id != nv.device_key_id:
            return self._failed(solicited, KeyKind.MEDIA, pkg.okt_timestamp, pkg.device_key_id, host, now,
                                f"media keys wrapped under device key {pkg.device_key_id.hex()}, "
                                f"drive holds {nv.device_key_id.hex() if nv.device_key else 'none'}")
        wrapper = self._media_wrapper(nv.device_key)
        header = envelope.media_package_header(pkg.csn, pkg.okt_timestamp, pkg.device_key_id, pkg.write_key_id,
                                               (w.key_id for w in pkg.media_keys))
        try:
            receipt = wrapper.unwrap_receipt(header, pkg.receipt)
            keys = {w.key_id: wrapper.unwrap_key(pkg.csn, pkg.okt_timestamp, w) for w in pkg.media_keys}
        except UnwrapError as exc:
            return self._failed(solicited, KeyKind.MEDIA, pkg.okt_timestamp, pkg.device_key_id, host, now, str(exc))
        self._accepted(KeyKind.MEDIA, pkg.okt_timestamp)
        new = MediaKeySet(pkg.okt_timestamp, pkg.write_key_id, keys, host)
        held = self.tape_loaded
        if held:
            self.held_media = new
        else:
            self.media, self.held_media = new, None
        nv.okt_timestamp = pkg.okt_timestamp
        ack = KeyAck(self.csn, KeyKind.MEDIA, pkg.okt_timestamp, receipt)
        return Output(
            [Transmit((host, TOKEN_LAN_PORT), MessageType.KEY_ACK, encode(ack))],
            [MediaKeysAccepted(pkg.okt_timestamp, len(keys), held)],
            persist=True,
        )

    # --- clearing -------------------------------------------------------

    def _clear(self, msg: ClearKeys) -> Output:
        mine = [a for a in msg.authorizations if a.csn == self.csn]
        if not mine:
            return Output()
        nv = self.nvram
        if nv.device_key is None:
            return Output(events=[ClearRefused("the drive holds no device keys to clear")])
        for auth in mine:
            if auth.device_key_id == nv.device_key_id and envelope.verify_clear_mac(
                nv.device_key, self.csn, auth.device_key_id, auth.mac
            ):
                return self._reset("token reset button")
        return Output(events=[ClearRefused("no authorization verifies under the drive's device key")])

    def _reset(self, by: str) -> Output:
        nv = self.nvram
        nv.device_key, nv.device_key_id, nv.reset, nv.kms_public_key = None, ZERO_KEY_ID, True, None
        self.media = self.held_media = None
        self._pulls.clear()
        self._skip.clear()
        self._last_receipt = None
        return Output(events=[KeysCleared(by)], persist=True)
