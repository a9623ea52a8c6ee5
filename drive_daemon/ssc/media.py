"""The SSC device's medium commands: READ/WRITE(6) fixed and variable, WRITE FILEMARKS,
SPACE, LOCATE, READ POSITION, REWIND, LOAD UNLOAD, ERASE. Each calls the TapeSession and
turns a :class:`~drive_daemon.tape.TapeCheck` into sense with the residue SSC-3 asks for."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from protocol.constants import Asc, ScsiOp, SpaceCode, SpaceUnit
from protocol.scsi import (
    Erase6,
    LoadUnload,
    Locate10,
    Locate16,
    LongPosition,
    Read6,
    ReadPosition,
    Rewind,
    SenseData,
    ShortPosition,
    Space6,
    Space16,
    Write6,
    WriteFilemarks6,
)
from protocol.constants import ReadPositionForm
from protocol.sense import Condition, SenseKey

from ..cartridge import RecordKind
from ..drive import Output
from ..tape import TapeCheck
from .outcome import Check, illegal

if TYPE_CHECKING:
    from .device import SscDevice


def _fail(dev: SscDevice, tc: TapeCheck, information: int, data: bytes = b"") -> Check:
    return Check(dev.sense_of(tc, information), data)


def read6(dev: SscDevice, nexus: str, cdb: Read6, data_out: bytes, now: float, out: Output) -> bytes:
    """Variable: one block of up to ``transfer_length`` octets; a shorter block is ILI with the
    residue (unless SILI), a longer one ILI with a negative residue and the position past it.
    Fixed: ``transfer_length`` blocks of the mode's block length; INFORMATION counts blocks."""
    dev.ready()
    if cdb.fixed and (cdb.sili or dev.block_length == 0):
        raise illegal()
    length, tape = cdb.transfer_length, dev.tape
    if length == 0:
        return b""
    if not cdb.fixed:
        try:
            block = tape.read_block(now, out)
        except TapeCheck as tc:
            raise _fail(dev, tc, length) from None
        if len(block) == length or (len(block) < length and cdb.sili):
            return block
        ili = SenseData(SenseKey.NO_SENSE, ili=True, information=length - len(block))
        raise Check(ili, block[:length])
    done: list[bytes] = []
    for i in range(length):
        try:
            block = tape.read_block(now, out)
        except TapeCheck as tc:
            raise _fail(dev, tc, length - i, b"".join(done)) from None
        if len(block) != dev.block_length:
            raise Check(SenseData(SenseKey.NO_SENSE, ili=True, information=length - i), b"".join(done))
        done.append(block)
    return b"".join(done)


def write6(dev: SscDevice, nexus: str, cdb: Write6, data_out: bytes, now: float, out: Output) -> bytes:
    dev.ready()
    length, tape = cdb.transfer_length, dev.tape
    if cdb.fixed and dev.block_length == 0:
        raise illegal()
    size = length * dev.block_length if cdb.fixed else length
    if size == 0:
        return b""
    if len(data_out) < size:
        raise illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
    view = memoryview(data_out)
    if not cdb.fixed:
        try:
            tape.write(view[:size], now, out)
        except TapeCheck as tc:
            raise _fail(dev, tc, length) from None
        return b""
    bl = dev.block_length
    for i in range(length):
        try:
            tape.write(view[i * bl:(i + 1) * bl], now, out)
        except TapeCheck as tc:
            raise _fail(dev, tc, length - i) from None
    return b""


def write_filemarks(dev: SscDevice, nexus: str, cdb: WriteFilemarks6, data_out: bytes, now: float,
                    out: Output) -> bytes:
    dev.ready()
    if cdb.wsmk:
        raise illegal()  # no setmarks
    try:
        dev.tape.write_filemarks(cdb.count, now, out)
    except TapeCheck as tc:
        raise _fail(dev, tc, cdb.count) from None
    return b""


def space(dev: SscDevice, nexus: str, cdb: Space6 | Space16, data_out: bytes, now: float, out: Output) -> bytes:
    """Blocks or filemarks, forward or back, or to end of data; INFORMATION is the signed part
    of the count not done (at a filemark, BOT or EOD)."""
    dev.ready()
    if isinstance(cdb, Space16) and cdb.parameter_length:
        raise illegal()
    try:
        if cdb.code == SpaceCode.END_OF_DATA:
            dev.tape.space_to_end(now, out)
        elif cdb.code in (SpaceCode.BLOCKS, SpaceCode.FILEMARKS):
            if cdb.count:
                dev.tape.space(SpaceUnit(cdb.code), cdb.count, now, out)
        else:
            raise illegal()
    except TapeCheck as tc:
        residue = tc.residue if cdb.count >= 0 else -tc.residue
        has_residue = tc.condition in (Condition.FILEMARK, Condition.END_OF_DATA, Condition.BEGINNING_OF_TAPE)
        raise _fail(dev, tc, residue if has_residue and cdb.code != SpaceCode.END_OF_DATA else 0) from None
    return b""


def locate(dev: SscDevice, nexus: str, cdb: Locate10 | Locate16, data_out: bytes, now: float, out: Output) -> bytes:
    """To a logical object number (blocks and filemarks count), or with LOCATE(16) DEST_TYPE 1
    to the start of a file. Partition 0 only."""
    dev.ready()
    if cdb.cp and cdb.partition != 0:
        raise illegal()
    if isinstance(cdb, Locate16):
        if cdb.dest_type == 0:
            target = cdb.logical_identifier
        elif cdb.dest_type == 1:
            target = _file_start(dev, cdb.logical_identifier)
        else:
            raise illegal()
    else:
        target = cdb.block_address
    try:
        dev.tape.locate(target, now, out)
    except TapeCheck as tc:
        raise Check(dev.sense_of(tc)) from None
    return b""


def _file_start(dev: SscDevice, file_number: int) -> int:
    """The logical object just after filemark ``file_number`` (file 0 starts at BOT)."""
    assert dev.tape.cartridge is not None
    if file_number == 0:
        return 0
    marks = 0
    for i, rec in enumerate(dev.tape.cartridge.records):
        if rec.kind is RecordKind.FILEMARK:
            marks += 1
            if marks == file_number:
                return i + 1
    return len(dev.tape.cartridge.records) + 1  # past EOD: BLANK CHECK, positioned at EOD


def read_position(dev: SscDevice, nexus: str, cdb: ReadPosition, data_out: bytes, now: float, out: Output) -> bytes:
    dev.ready()
    pos = dev.tape.read_position()
    if cdb.service_action in (ReadPositionForm.SHORT, ReadPositionForm.SHORT_VENDOR):
        return ShortPosition(pos.block, pos.block, bop=pos.block == 0).build()
    if cdb.service_action == ReadPositionForm.LONG:
        return LongPosition(pos.block, pos.file, bop=pos.block == 0).build()
    raise illegal()


def rewind(dev: SscDevice, nexus: str, cdb: Rewind, data_out: bytes, now: float, out: Output) -> bytes:
    dev.ready()
    dev.tape.rewind()
    return b""


def load_unload(dev: SscDevice, nexus: str, cdb: LoadUnload, data_out: bytes, now: float, out: Output) -> bytes:
    """LOAD threads the cartridge still in the drive (or rewinds a loaded one); UNLOAD leaves
    it in the drive, NOT READY until a LOAD or the operator. Keys held during the load are
    committed at unload (the seed's Holding Keys)."""
    if cdb.load:
        dev.tape.reload()
        dev._notice_loads(exclude=nexus)
        return b""
    if dev._prevent:
        raise illegal(Asc.MEDIUM_REMOVAL_PREVENTED)
    dev.ready()
    dev.tape.unload(out, keep_in_drive=True)
    return b""


def erase(dev: SscDevice, nexus: str, cdb: Erase6, data_out: bytes, now: float, out: Output) -> bytes:
    """Erase from the position to the end; succeeds without the tape's key (the token hears of it)."""
    dev.ready()
    dev.tape.erase(now, out)
    return b""


HANDLERS: dict[int, Callable[..., bytes]] = {
    ScsiOp.READ_6: read6,
    ScsiOp.WRITE_6: write6,
    ScsiOp.WRITE_FILEMARKS_6: write_filemarks,
    ScsiOp.SPACE_6: space,
    ScsiOp.SPACE_16: space,
    ScsiOp.LOCATE_10: locate,
    ScsiOp.LOCATE_16: locate,
    ScsiOp.READ_POSITION: read_position,
    ScsiOp.REWIND: rewind,
    ScsiOp.LOAD_UNLOAD: load_unload,
    ScsiOp.ERASE_6: erase,
}
