"""A SCSI (SSC-3) tape drive seen from the host, over an iSCSI initiator.

Every CDB and every reply layout comes from protocol/scsi.py (the one declaration both
sides share); this module only sequences commands and interprets status and sense:
GOOD returns, CHECK CONDITION raises the :mod:`host.errors` class for the sense key, with
the parsed sense attached. READ handles ILI (a shorter block is data, not an error).
Writes and counted reads can be pipelined: up to ``window`` commands in flight on the
session, so the round trip does not bound throughput.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from typing import Any, AsyncIterator, Callable, Iterable, Protocol

from protocol import scsi
from protocol.constants import (
    SECURITY_PROTOCOL_TAPE_ENCRYPTION,
    Asc,
    EncryptionMode,
    NextBlockStatus,
    ReadPositionForm,
    ScsiStatus,
    SpaceCode,
)
from protocol.sense import SenseKey

from protocol.scsi.security import TDE_DATA_ENCRYPTION_STATUS, TDE_NEXT_BLOCK_ENCRYPTION_STATUS

from . import errors as e
from .iscsi_client import IscsiClientError
from .limits import MAX_TRANSFER

TDE = SECURITY_PROTOCOL_TAPE_ENCRYPTION

DEFAULT_WINDOW = 8
UNIT_ATTENTION_RETRIES = 8

_BY_KEY: dict[int, type[e.CheckCondition]] = {
    SenseKey.RECOVERED_ERROR: e.RecoveredError, SenseKey.NOT_READY: e.NotReady,
    SenseKey.MEDIUM_ERROR: e.MediumError, SenseKey.HARDWARE_ERROR: e.HardwareError,
    SenseKey.ILLEGAL_REQUEST: e.IllegalRequest, SenseKey.UNIT_ATTENTION: e.UnitAttention,
    SenseKey.DATA_PROTECT: e.DataProtect, SenseKey.BLANK_CHECK: e.EndOfData,
    0x0B: e.AbortedCommand, 0x0D: e.VolumeOverflow,
}


class Initiator(Protocol):
    """What TapeDrive needs of an iSCSI session (host.iscsi_client.IscsiClient has it)."""

    async def execute(self, cdb: bytes, *, data_out: bytes | memoryview | None = None,
                      expected_in: int = 0) -> Any: ...


def check_condition(command: str, sense_bytes: bytes, data: bytes = b"") -> e.CheckCondition:
    """The typed exception for one CHECK CONDITION (the sense parsed by protocol/scsi.py)."""
    sense = scsi.SenseData.parse(sense_bytes)
    if sense.sense_key == SenseKey.NO_SENSE:
        if sense.filemark:
            return e.FilemarkDetected(command, sense, data)
        if sense.asc_ascq == Asc.END_OF_DATA_DETECTED:  # tgt's SPACE says so with NO SENSE, not BLANK CHECK
            return e.EndOfData(command, sense, data)
        if sense.asc_ascq == Asc.BEGINNING_OF_PARTITION_MEDIUM_DETECTED:
            return e.BeginningOfMedium(command, sense, data)
        if sense.eom:
            return e.EndOfMedium(command, sense, data)
        if sense.ili:
            return e.IncorrectLength(command, sense, data)
    return _BY_KEY.get(int(sense.sense_key), e.CheckCondition)(command, sense, data)


class TapeDrive:
    """One tape LUN behind an iSCSI session."""

    def __init__(self, initiator: Initiator) -> None:
        self.initiator = initiator

    # --- one command ----------------------------------------------------------------

    async def command(self, name: str, cdb: bytes, *, data_out: bytes | memoryview | None = None,
                      expected_in: int = 0) -> bytes:
        """Run one CDB; the data in on GOOD, else the typed exception."""
        reply = await self._execute(cdb, data_out, expected_in)
        if reply.status == ScsiStatus.GOOD:
            return bytes(reply.data)
        if reply.status == ScsiStatus.CHECK_CONDITION:
            raise check_condition(name, reply.sense, bytes(reply.data))
        raise e.CommandFailed(name, reply.status)

    async def _execute(self, cdb: bytes, data_out: bytes | memoryview | None, expected_in: int) -> Any:
        try:
            return await self.initiator.execute(cdb, data_out=data_out, expected_in=expected_in)
        except IscsiClientError as exc:
            raise e.TransportError(f"the iSCSI session failed: {exc}") from None

    # --- readiness and identity ------------------------------------------------------

    async def test_unit_ready(self) -> None:
        await self.command("TEST UNIT READY", scsi.TestUnitReady().build())

    async def ready(self) -> list[e.UnitAttention]:
        """TEST UNIT READY until the unit attentions (power on, medium changed) are consumed.

        Returns the attentions seen; NOT READY (no cartridge) propagates."""
        seen: list[e.UnitAttention] = []
        for _ in range(UNIT_ATTENTION_RETRIES):
            try:
                await self.test_unit_ready()
                return seen
            except e.UnitAttention as ua:
                seen.append(ua)
        raise e.HostError(f"the drive kept reporting unit attentions ({len(seen)} in a row); is it resetting?")

    async def inquiry(self) -> scsi.InquiryData:
        return scsi.InquiryData.parse(await self.command("INQUIRY", scsi.Inquiry(96).build(), expected_in=96))

    async def request_sense(self) -> scsi.SenseData:
        return scsi.SenseData.parse(await self.command("REQUEST SENSE", scsi.RequestSense(252).build(),
                                                      expected_in=252))

    async def read_block_limits(self) -> scsi.BlockLimits:
        return scsi.BlockLimits.parse(await self.command("READ BLOCK LIMITS", scsi.ReadBlockLimits().build(),
                                                         expected_in=6))

    async def mode_sense(self) -> scsi.ModeParameters:
        """MODE SENSE(6) header and block descriptor: density, block length, write protect, buffered mode."""
        data = await self.command("MODE SENSE", scsi.ModeSense6(0x00, 12).build(), expected_in=12)
        return scsi.ModeParameters.parse(data)

    async def set_block_size(self, block_size: int) -> None:
        """MODE SELECT(6) with a block descriptor: 0 means variable-length blocks."""
        current = await self.mode_sense()
        params = scsi.ModeParameters(density_code=current.density_code or 0, block_length=block_size,
                                     buffered_mode=current.buffered_mode).build()
        await self.command("MODE SELECT", scsi.ModeSelect6(len(params)).build(), data_out=params)

    # --- positioning -------------------------------------------------------------------

    async def rewind(self) -> None:
        await self.command("REWIND", scsi.Rewind().build())

    async def space_blocks(self, count: int) -> None:
        await self.command("SPACE", scsi.Space6(SpaceCode.BLOCKS, count).build())

    async def space_filemarks(self, count: int) -> None:
        await self.command("SPACE", scsi.Space6(SpaceCode.FILEMARKS, count).build())

    async def space_end_of_data(self) -> None:
        await self.command("SPACE", scsi.Space6(SpaceCode.END_OF_DATA).build())

    async def locate(self, block: int) -> None:
        await self.command("LOCATE", scsi.Locate10(block).build())

    async def read_position(self) -> scsi.ShortPosition:
        data = await self.command("READ POSITION", scsi.ReadPosition(ReadPositionForm.SHORT).build(), expected_in=20)
        return scsi.ShortPosition.parse(data)

    async def erase(self, *, long: bool = False) -> None:
        await self.command("ERASE", scsi.Erase6(long=long).build())

    async def load(self) -> None:
        await self.command("LOAD UNLOAD", scsi.LoadUnload(load=True).build())

    async def unload(self) -> None:
        await self.command("LOAD UNLOAD", scsi.LoadUnload(load=False).build())

    # --- data --------------------------------------------------------------------------

    async def write(self, data: bytes | memoryview) -> None:
        """One variable-length block."""
        await self.command("WRITE", scsi.Write6(len(data)).build(), data_out=data)

    async def write_filemarks(self, count: int = 1) -> None:
        await self.command("WRITE FILEMARKS", scsi.WriteFilemarks6(count).build())

    async def read(self, max_length: int = MAX_TRANSFER) -> bytes:
        """One variable-length block of at most ``max_length`` octets.

        A shorter block comes back as data (ILI with a positive residue); a longer one raises
        IncorrectLength (the block was truncated); a filemark raises FilemarkDetected."""
        return self._read_reply(await self._execute(scsi.Read6(max_length).build(), None, max_length), max_length)

    def _read_reply(self, reply: Any, max_length: int) -> bytes:
        if reply.status == ScsiStatus.GOOD:
            return bytes(reply.data)
        if reply.status != ScsiStatus.CHECK_CONDITION:
            raise e.CommandFailed("READ", reply.status)
        error = check_condition("READ", reply.sense, bytes(reply.data))
        sense = error.sense
        if type(error) is e.IncorrectLength and sense.information is not None and 0 < sense.information <= max_length:
            return bytes(reply.data)[: max_length - sense.information]  # a shorter block: ILI, residue
        raise error

    async def write_blocks(self, blocks: Iterable[bytes | memoryview], *, window: int = DEFAULT_WINDOW,
                           progress: Callable[[int], None] | None = None) -> int:
        """Write blocks with up to ``window`` in flight; returns the number written.

        The first CHECK CONDITION stops sending; it is raised once every reply is in."""
        in_flight: deque[tuple[int, asyncio.Task[None]]] = deque()
        written, failure = 0, None

        async def settle() -> None:
            nonlocal written, failure
            size, task = in_flight.popleft()
            try:
                await task
            except e.HostError as exc:
                failure = failure or exc
                return
            if failure is not None:
                return  # a block that landed after a failed one is not counted as backed up
            written += 1
            if progress:
                progress(size)

        try:
            for data in blocks:
                if failure is not None:
                    break
                in_flight.append((len(data), asyncio.ensure_future(self.write(data))))
                await asyncio.sleep(0)  # let the command go out in order
                if len(in_flight) >= window:
                    await settle()
            while in_flight:
                await settle()
        finally:
            for _, task in in_flight:
                task.cancel()
        if failure is not None:
            raise failure
        return written

    async def read_blocks(self, count: int, *, window: int = DEFAULT_WINDOW, max_length: int = MAX_TRANSFER
                          ) -> AsyncIterator[bytes]:
        """Read exactly ``count`` blocks, pipelined (the caller knows how many: never past a filemark).

        On an error the reads still in flight are collected, then it is raised."""
        pending: deque[asyncio.Task[Any]] = deque()
        sent = 0
        try:
            while sent < count or pending:
                while sent < count and len(pending) < window:
                    pending.append(asyncio.ensure_future(self._execute(scsi.Read6(max_length).build(), None, max_length)))
                    await asyncio.sleep(0)
                    sent += 1
                reply = await pending.popleft()
                try:
                    block = self._read_reply(reply, max_length)
                except e.HostError:
                    for task in pending:
                        await asyncio.gather(task, return_exceptions=True)
                    pending.clear()
                    raise
                yield block
        finally:
            for task in pending:
                task.cancel()

    # --- encryption -----------------------------------------------------------------------

    async def security_protocol_in(self, protocol: int, page: int, length: int = 8192) -> bytes:
        return await self.command("SECURITY PROTOCOL IN", scsi.SecurityProtocolIn(protocol, page, length).build(),
                                  expected_in=length)

    async def encryption_status(self) -> tuple[scsi.DataEncryptionStatus, scsi.NextBlockEncryptionStatus]:
        """The drive's data encryption status (page 0020h) and the next block's (page 0021h)."""
        data = scsi.DataEncryptionStatus.parse(await self.security_protocol_in(TDE, TDE_DATA_ENCRYPTION_STATUS))
        nxt = scsi.NextBlockEncryptionStatus.parse(await self.security_protocol_in(TDE, TDE_NEXT_BLOCK_ENCRYPTION_STATUS))
        return data, nxt

    # --- a summary for t10k host status ------------------------------------------------------

    async def status(self) -> dict[str, object]:
        """Identity, readiness, position, block size and encryption, as far as the drive tells them."""
        inq = await self.inquiry()
        out: dict[str, object] = {"vendor": inq.vendor, "product": inq.product, "revision": inq.revision}
        try:
            await self.ready()
            out["loaded"] = True
        except e.NotReady:
            out["loaded"] = False
            return out
        mode = await self.mode_sense()
        out |= {"block_size": mode.block_length or "variable",
                "density": None if mode.density_code is None else f"0x{mode.density_code:02x}",
                "write_protected": mode.write_protect}
        try:
            pos = await self.read_position()
            out |= {"block": pos.first_block, "bop": pos.bop, "eop": pos.eop}
        except e.IllegalRequest:
            out["block"] = "unknown (READ POSITION not supported)"
        try:
            data, nxt = await self.encryption_status()
        except e.IllegalRequest:
            out["encryption"] = "not supported (no SECURITY PROTOCOL IN)"
            return out
        out |= {"encryption": _name(EncryptionMode, data.encryption_mode),
                "write_key_id": data.key_id.hex() if data.key_id else None,
                "next_block": nxt.logical_object_number,
                "next_block_status": _name(NextBlockStatus, nxt.encryption_status),
                "next_block_key_id": nxt.key_id.hex() if nxt.key_id else None}
        return out


def _name(kind: type[enum.IntEnum], value: int) -> str:
    try:
        return kind(value).name
    except ValueError:
        return f"0x{value:02x}"
