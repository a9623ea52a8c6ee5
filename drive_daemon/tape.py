"""What a drive does with a tape: the seed's appendix table and its Chapter 3 key rule.

``APPENDIX`` is the one table: (key status, encrypting drive, medium, operation) -> rule.
:class:`TapeSession` runs tape operations against a loaded cartridge, asking the table
before every media access; a refusal is a :class:`TapeCheck` (the SSC device turns it
into sense data), and what the Drive must send (a missing key goes to the token as
error 00006109) is added to the caller's :class:`Output`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from protocol.blocks import BlockCrypto, BlockWriter
from protocol.constants import MAX_BLOCK_SIZE, MAX_BLOCKS_PER_BLOCK_KEY, BlockScheme, EncryptionMode, NextBlockStatus, SpaceUnit
from protocol.errors import UnwrapError
from protocol.ids import ZERO_KEY_ID
from protocol.sense import Condition, SenseProfile

from .cartridge import Cartridge, CartridgeError, RecordKind, UnknownVolume, VolumeInUse
from .drive import Drive, Output


class KeyStatus(enum.Enum):
    NO_DEVICE_KEYS = "no device keys"
    NO_MEDIA_KEYS = "no media keys"
    HAVE_MEDIA_KEYS = "media keys"


class Medium(enum.Enum):
    ENCRYPTED = "encrypted"
    PLAIN = "not encrypted"  # a blank tape counts as plain


class Operation(enum.Enum):
    WRITE_DATA = "Write Data"
    WRITE_FILEMARK = "WFM"
    SPACE_LOCATE = "Space/Locate"
    READ_DATA = "Read Data"


class RuleKind(enum.Enum):
    ALLOW = "no error reported"
    REFUSE = "error"
    REFUSE_UNLESS_AT_BOT = "no error at BOT, else error"
    NEEDS_KEYS_BEFORE = "every key used before this point (Chapter 3)"


@dataclass(frozen=True)
class Rule:
    kind: RuleKind
    condition: Condition | None = None


ALLOW = Rule(RuleKind.ALLOW)
NEEDS_KEYS_BEFORE = Rule(RuleKind.NEEDS_KEYS_BEFORE)


def _appendix() -> dict[tuple[KeyStatus, bool, Medium, Operation], Rule]:
    """The seed's appendix, every cell. A non-encrypting drive never holds keys (the seed's
    "Can't Happen" cells), so its rows are the same whatever the key status."""
    table: dict[tuple[KeyStatus, bool, Medium, Operation], Rule] = {}
    for op in Operation:
        writes = op in (Operation.WRITE_DATA, Operation.WRITE_FILEMARK)
        for ks in (KeyStatus.NO_DEVICE_KEYS, KeyStatus.NO_MEDIA_KEYS):
            for medium in Medium:  # 4/2681/343c on every operation, encrypted tape or not
                table[ks, True, medium, op] = Rule(RuleKind.REFUSE, Condition.NO_KEYS)
        for ks in KeyStatus:
            table[ks, False, Medium.ENCRYPTED, op] = (
                Rule(RuleKind.REFUSE_UNLESS_AT_BOT, Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_WRITE) if writes
                else Rule(RuleKind.REFUSE, Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_READ))
            table[ks, False, Medium.PLAIN, op] = ALLOW
        table[KeyStatus.HAVE_MEDIA_KEYS, True, Medium.ENCRYPTED, op] = NEEDS_KEYS_BEFORE
        table[KeyStatus.HAVE_MEDIA_KEYS, True, Medium.PLAIN, op] = (
            Rule(RuleKind.REFUSE_UNLESS_AT_BOT, Condition.PLAIN_MEDIA_ON_ENCRYPTING_WRITE) if writes else ALLOW)
    return table


APPENDIX = _appendix()


class TapeCheck(Exception):
    """A command ends with sense: the condition, a detail for people, the missing key's ID and,
    for SPACE, the residue (how much of the count was not done)."""

    def __init__(self, condition: Condition, detail: str = "", key_id: bytes = ZERO_KEY_ID, residue: int = 0) -> None:
        super().__init__(detail or condition.value)
        self.condition, self.detail, self.key_id, self.residue = condition, detail or condition.value, key_id, residue


@dataclass(frozen=True)
class TapePosition:
    """Where the tape is: what READ POSITION reports (``block`` counts blocks and filemarks)."""

    loaded: bool
    volser: str
    block: int
    file: int
    bot: bool
    eod: bool
    object_count: int


@dataclass(frozen=True)
class EncryptionState:
    """What SSC's Data and Next Block Encryption Status pages report."""

    encrypting_model: bool
    mode: EncryptionMode
    write_key_id: bytes
    next_block: int
    next_status: NextBlockStatus
    next_key_id: bytes


class TapeSession:
    """The host side of one drive: at most one cartridge, one position."""

    #: Blocks one block key seals before a new write session takes over (protocol/blocks.py).
    block_key_limit = MAX_BLOCKS_PER_BLOCK_KEY

    def __init__(self, drive: Drive, library: Path, profile: SenseProfile = SenseProfile.T10000) -> None:
        self.drive, self.library, self.profile = drive, library, profile
        self.cartridge: Cartridge | None = None
        self.position = 0
        self._ciphers: dict[bytes, BlockCrypto] = {}
        #: This load's write sessions, one per media key: each has its own salt and block key.
        self._writers: dict[bytes, BlockWriter] = {}
        self._keys_checked: tuple[object, int] = (None, 0)  # (the media key set, records verified)
        #: A cartridge unloaded by the host but still in the drive (LOAD threads it again).
        self.unloaded: str | None = None
        #: Counts loads, so a SCSI device can raise "medium may have changed" (28h/00h).
        self.load_generation = 0

    # --- the drive's view ----------------------------------------------------

    def key_status(self) -> KeyStatus:
        if self.drive.nvram.device_key is None:
            return KeyStatus.NO_DEVICE_KEYS
        if self.drive.media is None:
            return KeyStatus.NO_MEDIA_KEYS
        return KeyStatus.HAVE_MEDIA_KEYS

    def medium(self) -> Medium:
        tape = self._tape()
        for rec in tape.records:
            if rec.kind is not RecordKind.FILEMARK:
                return Medium.ENCRYPTED if rec.kind is RecordKind.ENCRYPTED else Medium.PLAIN
        return Medium.PLAIN

    def _tape(self) -> Cartridge:
        if self.cartridge is None:
            raise TapeCheck(Condition.NO_TAPE)
        return self.cartridge

    def _first_missing_key(self, end: int) -> bytes | None:
        """The first key used on the tape before ``end`` that the drive does not hold.
        Checked incrementally: sequential I/O does not rescan the tape."""
        media = self.drive.media
        assert media is not None
        records = self._tape().records
        checked_for, upto = self._keys_checked
        start = min(upto if checked_for is media else 0, end)
        for i in range(start, min(end, len(records))):
            rec = records[i]
            if rec.kind is RecordKind.ENCRYPTED and rec.key_id not in media.keys:
                self._keys_checked = (media, i)
                return rec.key_id
        self._keys_checked = (media, max(start, min(end, len(records))))
        return None

    def _forget_checks_from(self, index: int) -> None:
        media, upto = self._keys_checked
        self._keys_checked = (media, min(upto, index))

    def _check(self, op: Operation, target: int, out: Output, now: float) -> None:
        """Ask the appendix before touching the medium; ``target`` is where the access ends."""
        rule = APPENDIX[self.key_status(), self.drive.encrypting, self.medium(), op]
        if rule.kind is RuleKind.ALLOW:
            return
        if rule.kind is RuleKind.REFUSE:
            assert rule.condition is not None
            raise TapeCheck(rule.condition)
        if rule.kind is RuleKind.REFUSE_UNLESS_AT_BOT:
            assert rule.condition is not None
            if self.position != 0:
                raise TapeCheck(rule.condition)
            return
        # NEEDS_KEYS_BEFORE: writing from BOT needs none of the old keys.
        if op in (Operation.WRITE_DATA, Operation.WRITE_FILEMARK) and self.position == 0:
            self._report_unreadable_label(out, now)
            return
        missing = self._first_missing_key(target)
        if missing is not None:
            out.sends += (report := self.drive.missing_key(missing, now)).sends
            out.events += report.events
            raise TapeCheck(Condition.MISSING_KEY, f"missing key {missing.hex()}", missing)

    def _report_unreadable_label(self, out: Output, now: float) -> None:
        """Erasing or relabelling without the key that initialised the tape: the seed says it
        succeeds but generates the missing key error to the token."""
        tape, media = self._tape(), self.drive.media
        if media is None or not self.drive.encrypting:
            return
        first = next((r for r in tape.records if r.kind is not RecordKind.FILEMARK), None)
        if first is not None and first.kind is RecordKind.ENCRYPTED and first.key_id not in media.keys:
            report = self.drive.missing_key(first.key_id, now)
            out.sends += report.sends
            out.events += report.events

    # --- commands (the SSC device calls these) -----------------------------------

    def load(self, volser: str) -> None:
        """The operator puts a cartridge in and the drive threads it (position: BOT)."""
        if self.cartridge is not None:
            raise TapeCheck(Condition.TAPE_LOADED, f"{self.cartridge.volser} is loaded; unload it first")
        try:
            self.cartridge = Cartridge.load(self.library, volser)
        except UnknownVolume as exc:
            raise TapeCheck(Condition.UNKNOWN_VOLUME, str(exc)) from None
        except VolumeInUse as exc:
            raise TapeCheck(Condition.VOLUME_IN_USE, str(exc)) from None
        except CartridgeError as exc:
            raise TapeCheck(Condition.MEDIUM_CORRUPT, str(exc)) from None
        self.position = 0
        self.unloaded = None
        self.load_generation += 1
        self._keys_checked = (None, 0)
        self._writers.clear()
        self.drive.load_tape()

    def unload(self, out: Output, *, keep_in_drive: bool = False) -> str:
        """Rewind and unload; keys held while the tape was loaded are committed now (Holding Keys).
        ``keep_in_drive``: the host's LOAD UNLOAD, after which a LOAD threads the same cartridge again."""
        tape = self._tape()
        tape.close()
        self._writers.clear()
        self.cartridge, self.position = None, 0
        self.unloaded = tape.volser if keep_in_drive else None
        held = self.drive.unload_tape()
        out.events += held.events
        return tape.volser

    def reload(self) -> None:
        """The host's LOAD: thread the cartridge the host unloaded, or rewind the one loaded."""
        if self.cartridge is not None:
            self.rewind()
        elif self.unloaded is not None:
            self.load(self.unloaded)
        else:
            raise TapeCheck(Condition.NO_TAPE)

    def remove(self, out: Output) -> str | None:
        """The operator takes the cartridge out, loaded or not; returns its volume serial."""
        if self.cartridge is not None:
            return self.unload(out)
        volser, self.unloaded = self.unloaded, None
        return volser

    def rewind(self) -> None:
        self._tape().sync()
        self.position = 0

    def write_filemarks(self, count: int, now: float, out: Output) -> None:
        tape = self._tape()
        self.drive.last_io = now
        if count == 0:  # SSC: flush the buffer, nothing written
            tape.sync()
            return
        self._check(Operation.WRITE_FILEMARK, self.position, out, now)
        self._truncate(self.position)
        for _ in range(count):
            tape.append(RecordKind.FILEMARK, [])
        self.position += count
        tape.sync()  # filemarks are the host's sync points

    def erase(self, now: float, out: Output) -> None:
        tape = self._tape()
        self.drive.last_io = now
        if self.drive.encrypting and self.key_status() is KeyStatus.HAVE_MEDIA_KEYS:
            self._report_unreadable_label(out, now)
        self._truncate(self.position)
        tape.sync()

    def _truncate(self, index: int) -> None:
        self._tape().truncate(index)
        self._forget_checks_from(index)

    def write(self, data: bytes | memoryview, now: float, out: Output) -> None:
        tape = self._tape()
        if len(data) > MAX_BLOCK_SIZE:
            raise TapeCheck(Condition.BLOCK_TOO_LARGE, f"block of {len(data)} octets; at most {MAX_BLOCK_SIZE}")
        self.drive.last_io = now
        self._check(Operation.WRITE_DATA, self.position, out, now)
        self._truncate(self.position)
        media = self.drive.media
        if self.drive.encrypting and media is not None:
            key_id = media.write_key_id
            head, ciphertext = self._seal(tape.volser, key_id, media.keys[key_id], data)
            tape.append(RecordKind.ENCRYPTED, [head, ciphertext], key_id, BlockScheme.SESSION_KEY)
        else:
            tape.append(RecordKind.PLAIN, [data])
        self.position += 1

    def read_block(self, now: float, out: Output, max_length: int | None = None) -> bytes:
        """The next block, whole, and the position past it. At a filemark: FILEMARK, the position
        past it. At end of data: END_OF_DATA. ``max_length``: refuse a longer block, not moving."""
        tape = self._tape()
        self.drive.last_io = now
        if self.position >= len(tape):
            raise TapeCheck(Condition.END_OF_DATA)
        rec = tape.records[self.position]
        if rec.kind is RecordKind.FILEMARK:
            self.position += 1
            raise TapeCheck(Condition.FILEMARK)
        self._check(Operation.READ_DATA, self.position + 1, out, now)
        payload = tape.read_payload(self.position)
        if rec.kind is RecordKind.ENCRYPTED:
            media = self.drive.media
            assert media is not None  # the appendix refused otherwise
            try:
                data = self._cipher(rec.key_id, media.keys[rec.key_id]).open(
                    tape.volser, self.position, rec.key_id, rec.scheme, payload)
            except UnwrapError as exc:
                raise TapeCheck(Condition.MEDIUM_CORRUPT, str(exc)) from None
        else:
            data = payload
        if max_length is not None and len(data) > max_length:
            raise TapeCheck(Condition.INVALID_REQUEST, f"block of {len(data)} octets exceeds {max_length}")
        self.position += 1
        return data

    def locate(self, block: int, now: float, out: Output) -> None:
        """To logical object ``block`` (blocks and filemarks count); past the end: END_OF_DATA at EOD."""
        tape = self._tape()
        self.drive.last_io = now
        target = min(block, len(tape))
        if target > 0:
            self._check(Operation.SPACE_LOCATE, target, out, now)
        self.position = target
        if block > len(tape):
            raise TapeCheck(Condition.END_OF_DATA, f"block {block} is past the end of data ({len(tape)})",
                                  residue=block - len(tape))

    def space_to_end(self, now: float, out: Output) -> None:
        """SPACE to end of data."""
        tape = self._tape()
        self.drive.last_io = now
        if len(tape):
            self._check(Operation.SPACE_LOCATE, len(tape), out, now)
        self.position = len(tape)

    def space(self, unit: SpaceUnit, count: int, now: float, out: Output) -> None:
        """SSC semantics: spacing blocks stops after a filemark (forward) or before it (backward);
        at EOD or BOT, sense says so; the residue is the part of the count not done."""
        records = self._tape().records
        self.drive.last_io = now
        pos, condition = self.position, None
        step = 1 if count > 0 else -1
        remaining = abs(count)
        while remaining and condition is None:
            if step > 0:
                if pos >= len(records):
                    condition = Condition.END_OF_DATA
                    break
                kind = records[pos].kind
                pos += 1
            else:
                if pos == 0:
                    condition = Condition.BEGINNING_OF_TAPE
                    break
                pos -= 1
                kind = records[pos].kind
            if unit is SpaceUnit.FILEMARKS:
                remaining -= kind is RecordKind.FILEMARK
            elif kind is RecordKind.FILEMARK:
                condition = Condition.FILEMARK
            else:
                remaining -= 1
        if pos > 0:
            self._check(Operation.SPACE_LOCATE, pos, out, now)
        self.position = pos
        if condition is not None:
            raise TapeCheck(condition, residue=remaining)

    def read_position(self) -> TapePosition:
        tape = self.cartridge
        if tape is None:
            return TapePosition(False, "", 0, 0, True, False, 0)
        files = sum(1 for r in tape.records[: self.position] if r.kind is RecordKind.FILEMARK)
        return TapePosition(True, tape.volser, self.position, files, self.position == 0,
                            self.position >= len(tape), len(tape))

    def encryption_status(self) -> EncryptionState:
        media = self.drive.media
        mode = EncryptionMode.ENCRYPT if self.drive.encrypting and media is not None else EncryptionMode.OFF
        write_key = media.write_key_id if media is not None else ZERO_KEY_ID
        status, key_id = NextBlockStatus.UNKNOWN, ZERO_KEY_ID
        tape = self.cartridge
        if tape is not None and self.position < len(tape):
            rec = tape.records[self.position]
            if rec.kind is RecordKind.FILEMARK:
                status = NextBlockStatus.NOT_A_BLOCK
            elif rec.kind is RecordKind.PLAIN:
                status = NextBlockStatus.NOT_ENCRYPTED
            else:
                key_id = rec.key_id
                held = media is not None and self.drive.encrypting and rec.key_id in media.keys
                status = NextBlockStatus.ENCRYPTED if held else NextBlockStatus.ENCRYPTED_KEY_MISSING
        return EncryptionState(self.drive.encrypting, mode, write_key, self.position, status, key_id)

    def _cipher(self, key_id: bytes, key: bytes) -> BlockCrypto:
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            cipher = self._ciphers[key_id] = BlockCrypto(key)
        return cipher

    def _seal(self, volser: str, key_id: bytes, key: bytes, data: bytes | memoryview) -> tuple[bytes, bytes]:
        """Seal the block at the position in this load's write session for the key; a session whose
        block key has sealed all it may is replaced by a new one (a new salt), never reused."""
        writer = self._writers.get(key_id)
        if writer is None or writer.exhausted:
            writer = self._writers[key_id] = self._cipher(key_id, key).writer(volser, key_id, limit=self.block_key_limit)
        return writer.seal(self.position, data)

    def power_off(self) -> None:
        """Power lost: the tape stays in the drive (closed), keys and ciphers are gone."""
        self._ciphers.clear()
        self._writers.clear()
        self._keys_checked = (None, 0)
