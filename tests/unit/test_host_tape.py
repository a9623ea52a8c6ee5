"""TapeDrive's reading of status and sense, its ILI handling and its pipelines, over a scripted initiator.

The initiator here is a boundary stand-in (these tests are about what TapeDrive does with
replies); the real initiator against real targets is in tests/integration/test_host_tgt.py.
CDBs are decoded and sense data built with protocol/scsi.py, the one declaration of both.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Callable

import pytest

from host import errors as e
from host.tape import TapeDrive, check_condition
from protocol.constants import ScsiOp, ScsiStatus
from protocol.scsi import Read6, SenseData, Write6, decode_cdb
from protocol.sense import Condition, SenseKey, sense_for


@dataclass(frozen=True)
class Reply:
    status: int
    data: bytes = b""
    sense: bytes = b""
    residual: int = 0


GOOD = Reply(ScsiStatus.GOOD)


def check(sense: SenseData, data: bytes = b"") -> Reply:
    return Reply(ScsiStatus.CHECK_CONDITION, data, sense.build())


class Scripted:
    """Answers each CDB with ``answer(cdb)``, after ``delay`` s; records the CDBs in arrival order."""

    def __init__(self, answer: Callable[[object, bytes | memoryview | None], Reply], delay: float = 0.0) -> None:
        self.answer, self.delay, self.seen = answer, delay, []  # type: ignore[var-annotated]

    async def execute(self, cdb: bytes, *, data_out: bytes | memoryview | None = None, expected_in: int = 0) -> Reply:
        decoded = decode_cdb(cdb)
        self.seen.append(decoded)
        reply = self.answer(decoded, data_out)
        await asyncio.sleep(self.delay)
        return reply


@pytest.mark.parametrize(("sense", "cls"), [
    (SenseData.of(sense_for(Condition.MISSING_KEY), key_id=bytes.fromhex("0a0b0c0d00000063")), e.MediumError),
    (SenseData.of(sense_for(Condition.NO_KEYS)), e.HardwareError),
    (SenseData.of(sense_for(Condition.PLAIN_MEDIA_ON_ENCRYPTING_WRITE)), e.DataProtect),
    (SenseData.of(sense_for(Condition.END_OF_DATA)), e.EndOfData),
    (SenseData.of(sense_for(Condition.NO_TAPE)), e.NotReady),
    (SenseData(SenseKey.UNIT_ATTENTION, 0x29, 0x00), e.UnitAttention),
    (SenseData(SenseKey.ILLEGAL_REQUEST, 0x20, 0x00), e.IllegalRequest),
    (SenseData(SenseKey.NO_SENSE, 0, 1, filemark=True, information=10), e.FilemarkDetected),
    (SenseData(SenseKey.NO_SENSE, 0, 0, ili=True, information=-5), e.IncorrectLength),
    (SenseData(SenseKey.NO_SENSE, 0, 2, eom=True), e.EndOfMedium),
    (SenseData(SenseKey.NO_SENSE, 0, 5), e.EndOfData),  # tgt's SPACE into end of data
    (SenseData(SenseKey.NO_SENSE, 0, 4, eom=True, information=1), e.BeginningOfMedium),
    (SenseData(0x0D, 0, 2), e.VolumeOverflow),
])
def test_every_check_condition_becomes_its_typed_error(sense: SenseData, cls: type[e.CheckCondition]) -> None:
    error = check_condition("READ", sense.build())
    assert type(error) is cls and error.sense == sense
    assert str(error).startswith("READ: ")


def test_a_missing_key_says_the_seed_code_and_the_key_id() -> None:
    key_id = bytes.fromhex("0a0b0c0d00000063")
    error = check_condition("READ", SenseData.of(sense_for(Condition.MISSING_KEY), key_id=key_id).build())
    assert error.key_id == key_id
    assert "3/2605/6109" in str(error) and "0a0b0c0d00000063" in str(error)


async def test_ready_consumes_unit_attentions_and_not_ready_propagates() -> None:
    script = [SenseData(SenseKey.UNIT_ATTENTION, 0x29, 0x00), SenseData(SenseKey.UNIT_ATTENTION, 0x28, 0x00)]
    tape = TapeDrive(Scripted(lambda cdb, _: check(script.pop(0)) if script else GOOD))
    seen = await tape.ready()
    assert [ua.sense.asc for ua in seen] == [0x29, 0x28]
    empty = TapeDrive(Scripted(lambda cdb, _: check(SenseData.of(sense_for(Condition.NO_TAPE)))))
    with pytest.raises(e.NotReady, match="t10k tape load"):
        await empty.ready()


async def test_a_short_block_is_data_and_a_long_one_an_error() -> None:
    block = b"x" * 100

    def answer(cdb: object, _: object) -> Reply:
        assert isinstance(cdb, Read6) and not cdb.fixed
        residue = cdb.transfer_length - len(block)
        if residue == 0:
            return Reply(ScsiStatus.GOOD, block)
        return check(SenseData(SenseKey.NO_SENSE, ili=True, information=residue), block[: cdb.transfer_length])

    tape = TapeDrive(Scripted(answer))
    assert await tape.read(4096) == block
    assert await tape.read(100) == block
    with pytest.raises(e.IncorrectLength) as long:
        await tape.read(60)
    assert long.value.sense.information == -40


async def test_pipelined_writes_keep_order_and_raise_the_first_failure_after_all_replies() -> None:
    failing = SenseData.of(sense_for(Condition.NO_KEYS))
    writes: list[bytes] = []

    def answer(cdb: object, data: bytes | memoryview | None) -> Reply:
        assert isinstance(cdb, Write6) and data is not None and len(data) == cdb.transfer_length
        writes.append(bytes(data))
        return check(failing) if len(writes) == 5 else GOOD

    initiator = Scripted(answer, delay=0.001)
    done: list[int] = []
    blocks = [bytes([i]) * (10 + i) for i in range(20)]
    with pytest.raises(e.HardwareError):
        await TapeDrive(initiator).write_blocks(blocks, window=4, progress=done.append)
    assert writes == blocks[: len(writes)]  # in order, nothing skipped
    assert 5 <= len(writes) <= 5 + 4  # stopped sending within one window of the failure
    assert done == [len(b) for b in blocks[:4]]  # progress only for the blocks written


async def test_pipelined_reads_stop_at_an_error_with_nothing_left_in_flight() -> None:
    count = {"n": 0}

    def answer(cdb: object, _: object) -> Reply:
        count["n"] += 1
        if count["n"] == 3:
            return check(SenseData(SenseKey.NO_SENSE, 0, 1, filemark=True, information=512))
        return Reply(ScsiStatus.GOOD, bytes([count["n"]]) * 512)

    initiator = Scripted(answer, delay=0.001)
    got = []
    with pytest.raises(e.FilemarkDetected):
        async for block in TapeDrive(initiator).read_blocks(10, window=4, max_length=512):
            got.append(block)
    assert got == [b"\x01" * 512, b"\x02" * 512]
    sent = len(initiator.seen)
    await asyncio.sleep(0.01)
    assert len(initiator.seen) == sent and all(c.OP is ScsiOp.READ_6 for c in initiator.seen)  # type: ignore[attr-defined]
