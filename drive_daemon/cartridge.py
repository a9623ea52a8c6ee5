"""A tape cartridge as a file: an append-only log of records, one per logical object.

Each record is a 20-octet header (magic, kind, length, key ID, CRC-32) followed by its
payload: plain data, an encrypted block (its head, then AES-GCM ciphertext; the key ID in
the clear in the header, and the header's scheme octet says how it was sealed: since
protocol version 3 the head is a session salt and a counter nonce, before it a random
nonce, see protocol/blocks.py), or nothing for a filemark. The CRC covers the header and
the whole payload of a plain block; of an encrypted block it covers the header, the head
and the GCM tag, since GCM already authenticates every ciphertext octet and the tag,
written last, shows a torn record. Writing at
a position truncates the file there first, as writing truncates a tape. A crash can only
leave a torn last record, which loading detects by its CRC and cuts off. A cartridge
is locked while a drive has it loaded.
"""

from __future__ import annotations

import enum
import fcntl
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from construct import Bytes, Const, ConstructError, Int8ub, Int32ub, PaddedString, Struct

from protocol.blocks import head_size
from protocol.constants import KEY_ID_SIZE, TAG_SIZE, BlockScheme
from protocol.ids import ZERO_KEY_ID

from .errors import DriveDaemonError

log = logging.getLogger("t10k.cartridge")

FILE_HEADER = Struct("magic" / Const(b"T10KTAPE"), "version" / Const(1, Int8ub), "volser" / PaddedString(16, "ascii"))
RECORD_HEADER = Struct(
    "magic" / Const(b"TR"), "kind" / Int8ub, "scheme" / Int8ub, "length" / Int32ub,
    "key_id" / Bytes(KEY_ID_SIZE), "crc" / Int32ub,
)
FILE_HEADER_SIZE = FILE_HEADER.sizeof()
#: Space is claimed ahead in steps of this size: appending into allocated space costs a tenth
#: of growing the file block by block (docs/BENCHMARKS.md). close() gives back what is unused.
PREALLOCATE = 64 * 1024 * 1024
RECORD_HEADER_SIZE = RECORD_HEADER.sizeof()
SUFFIX = ".tape"


class RecordKind(enum.IntEnum):
    PLAIN = 1
    ENCRYPTED = 2
    FILEMARK = 3


class CartridgeError(DriveDaemonError):
    """The cartridge cannot be used as asked; the message says why."""


class UnknownVolume(CartridgeError):
    pass


class VolumeInUse(CartridgeError):
    pass


class CorruptRecord(CartridgeError):
    pass


@dataclass(frozen=True)
class Record:
    offset: int  # of the record header
    kind: RecordKind
    length: int
    key_id: bytes
    scheme: BlockScheme = BlockScheme.RANDOM_NONCE  # how an encrypted block was sealed


def _crc(kind: int, length: int, key_id: bytes, parts: list[bytes | memoryview],
         scheme: BlockScheme = BlockScheme.RANDOM_NONCE) -> int:
    crc = zlib.crc32(bytes([kind]) + length.to_bytes(4, "big") + key_id)
    if scheme is not BlockScheme.RANDOM_NONCE:  # the CRC of records written before the scheme octet is unchanged
        crc = zlib.crc32(bytes([scheme]), crc)
    head = head_size(scheme)
    if kind == RecordKind.ENCRYPTED and length >= head + TAG_SIZE:
        # parts are [head, ciphertext] when written, [payload] when read back
        crc = zlib.crc32(memoryview(parts[0])[:head], crc)
        return zlib.crc32(memoryview(parts[-1])[-TAG_SIZE:], crc)
    for p in parts:
        crc = zlib.crc32(p, crc)
    return crc


def valid_volser(volser: str) -> bool:
    return 1 <= len(volser) <= 16 and all(c.isalnum() or c in "-_" for c in volser)


def cartridge_path(library: Path, volser: str) -> Path:
    if not valid_volser(volser):
        raise UnknownVolume(f"{volser!r} is not a volume serial (1-16 letters, digits, '-' or '_')")
    return library / f"{volser}{SUFFIX}"


class Cartridge:
    def __init__(self, path: Path, fd: int, volser: str, records: list[Record]) -> None:
        self.path, self._fd, self.volser, self.records = path, fd, volser, records
        self._allocated = os.fstat(fd).st_size

    @classmethod
    def create(cls, library: Path, volser: str) -> None:
        """A new blank cartridge in the library (refused if the volume serial exists)."""
        path = cartridge_path(library, volser)
        library.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise CartridgeError(f"volume {volser} already exists in {library}") from None
        try:
            os.write(fd, FILE_HEADER.build(dict(volser=volser)))
            os.fsync(fd)
        finally:
            os.close(fd)

    @classmethod
    def load(cls, library: Path, volser: str) -> Cartridge:
        path = cartridge_path(library, volser)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            raise UnknownVolume(f"no volume {volser} in the library {library}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise VolumeInUse(f"volume {volser} is loaded in another drive") from None
        try:
            return cls(path, fd, volser, cls._scan(fd, path, volser))
        except BaseException:
            os.close(fd)
            raise

    @staticmethod
    def _scan(fd: int, path: Path, volser: str) -> list[Record]:
        size = os.fstat(fd).st_size
        try:
            header = FILE_HEADER.parse(os.pread(fd, FILE_HEADER_SIZE, 0))
        except ConstructError:
            raise CorruptRecord(f"{path} is not a t10k cartridge") from None
        if header.volser != volser:
            raise CorruptRecord(f"{path} is labelled {header.volser!r}, not {volser!r}")
        records: list[Record] = []
        offset = FILE_HEADER_SIZE
        while offset < size:
            raw = os.pread(fd, RECORD_HEADER_SIZE, offset)
            try:
                h = RECORD_HEADER.parse(raw)
                kind, scheme = RecordKind(h.kind), BlockScheme(h.scheme)
            except (ConstructError, ValueError):
                break
            if scheme is not BlockScheme.RANDOM_NONCE and kind is not RecordKind.ENCRYPTED:
                break
            end = offset + RECORD_HEADER_SIZE + h.length
            if end > size:
                break
            records.append(Record(offset, kind, h.length, h.key_id, scheme))
            offset = end
        if records and not Cartridge._crc_ok(fd, records[-1]):  # whole but wrong: torn by a crash
            offset = records.pop().offset
            log.warning("cartridge %s: cutting a torn record at offset %d", volser, offset)
        if offset < size:
            if any(os.pread(fd, RECORD_HEADER_SIZE, offset)):
                log.warning("cartridge %s: cutting %d octets of torn data at offset %d", volser, size - offset, offset)
            os.ftruncate(fd, offset)  # torn data, or space claimed ahead before a crash
            os.fsync(fd)
        return records

    @staticmethod
    def _crc_ok(fd: int, rec: Record) -> bool:
        h = RECORD_HEADER.parse(os.pread(fd, RECORD_HEADER_SIZE, rec.offset))
        payload = os.pread(fd, rec.length, rec.offset + RECORD_HEADER_SIZE)
        return len(payload) == rec.length and h.crc == _crc(rec.kind, rec.length, rec.key_id, [payload], rec.scheme)

    # --- access -----------------------------------------------------------

    def __len__(self) -> int:
        return len(self.records)

    def read_payload(self, index: int) -> bytes:
        """The payload of record ``index``, checked against its CRC."""
        rec = self.records[index]
        h = RECORD_HEADER.parse(os.pread(self._fd, RECORD_HEADER_SIZE, rec.offset))
        payload = os.pread(self._fd, rec.length, rec.offset + RECORD_HEADER_SIZE)
        if len(payload) != rec.length or h.crc != _crc(rec.kind, rec.length, rec.key_id, [payload], rec.scheme):
            raise CorruptRecord(f"block {index} of {self.volser} fails its checksum")
        return payload

    @property
    def end(self) -> int:
        """Offset just past the last record: where the next one goes."""
        last = self.records[-1] if self.records else None
        return last.offset + RECORD_HEADER_SIZE + last.length if last else FILE_HEADER_SIZE

    def truncate(self, index: int) -> None:
        """Forget every record from ``index`` on: what writing there does to a tape."""
        if index < len(self.records):
            offset = self.records[index].offset
            os.ftruncate(self._fd, offset)
            self._allocated = offset
            del self.records[index:]

    def append(self, kind: RecordKind, parts: list[bytes | memoryview], key_id: bytes = ZERO_KEY_ID,
               scheme: BlockScheme = BlockScheme.RANDOM_NONCE) -> None:
        length = sum(len(p) for p in parts)
        offset = self.end
        if offset + RECORD_HEADER_SIZE + length > self._allocated:
            claim = max(PREALLOCATE, RECORD_HEADER_SIZE + length)
            os.posix_fallocate(self._fd, self._allocated, offset + claim - self._allocated)
            self._allocated = offset + claim
        header = RECORD_HEADER.build(dict(kind=kind, scheme=scheme, length=length, key_id=key_id,
                                          crc=_crc(kind, length, key_id, parts, scheme)))
        written = os.pwritev(self._fd, [header, *parts], offset)
        if written != RECORD_HEADER_SIZE + length:
            os.ftruncate(self._fd, offset)
            self._allocated = offset
            raise CartridgeError(f"short write to {self.path} ({written} of {RECORD_HEADER_SIZE + length} octets)")
        self.records.append(Record(offset, kind, length, key_id, scheme))

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.ftruncate(self._fd, self.end)  # give back the space claimed ahead
            os.fsync(self._fd)
            os.close(self._fd)  # releases the lock
            self._fd = -1


def list_library(library: Path) -> list[str]:
    """The volume serials in a library; a library that does not exist is an error, not an empty list."""
    if not library.is_dir():
        what = "is not a directory" if library.exists() else "does not exist"
        raise CartridgeError(f"library {library} {what} ('t10k tape new --library {library} VOLSER' creates one)")
    return sorted(p.name[: -len(SUFFIX)] for p in library.glob(f"*{SUFFIX}"))
