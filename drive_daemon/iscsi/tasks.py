"""A SCSI task on the target: the data-out it collects and the PDUs that answer it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from protocol.iscsi import DataIn, Pdu, ScsiCommand, ScsiResponse, SessionParams

from .lun import GOOD, ScsiOutcome


@dataclass
class Burst:
    offset: int
    length: int
    received: int = 0
    datasn: int = 0


@dataclass
class Task:
    pdu: ScsiCommand
    immediate: bool
    length: int                         # Expected Data Transfer Length
    data: bytes | bytearray | None      # data-out collected so far (None: nothing to collect)
    received: int = 0
    unsolicited_end: int = 0            # offsets below this come unsolicited (TTT ffffffff)
    unsolicited_next: int = 0
    next_r2t_offset: int = 0
    r2tsn: int = 0
    bursts: dict[int, Burst] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.data is None or self.received >= self.length


def reply_pdus(pdu: ScsiCommand, length: int, outcome: ScsiOutcome, params: SessionParams,
               next_statsn: Callable[[], int], expcmdsn: int, maxcmdsn: int) -> list[Pdu]:
    """Data-In split by the initiator's MaxRecvDataSegmentLength in sequences of at most
    MaxBurstLength, the status in the last one when GOOD; otherwise a SCSI Response with
    autosense after them. Data longer than ``length`` is cut (overflow), shorter is an underflow."""
    out: list[Pdu] = []
    data = memoryview(outcome.data_in).cast("B") if pdu.read else memoryview(b"")
    overflow = underflow = False
    residual = 0
    if pdu.read:
        if len(data) > length:
            overflow, residual, data = True, len(data) - length, data[:length]
        elif len(data) < length:
            underflow, residual = True, length - len(data)
    good = outcome.status == GOOD
    step, burst = params.initiator_max_recv, params.max_burst
    offset, datasn = 0, 0
    while offset < len(data):
        n = min(step, len(data) - offset, burst - offset % burst)
        last = offset + n == len(data)
        with_status = last and good
        out.append(DataIn(final=last or (offset + n) % burst == 0, has_status=with_status,
                          overflow=with_status and overflow, underflow=with_status and underflow,
                          status=outcome.status if with_status else 0, lun=pdu.lun, itt=pdu.itt,
                          statsn=next_statsn() if with_status else 0, expcmdsn=expcmdsn, maxcmdsn=maxcmdsn,
                          datasn=datasn, offset=offset, residual=residual if with_status else 0,
                          data=data[offset:offset + n]))
        offset += n
        datasn += 1
    if len(data) and good:
        return out
    sense = bytes(outcome.sense)
    segment = len(sense).to_bytes(2, "big") + sense if sense else b""
    out.append(ScsiResponse(overflow=overflow, underflow=underflow, response=0, status=outcome.status, itt=pdu.itt,
                            statsn=next_statsn(), expcmdsn=expcmdsn, maxcmdsn=maxcmdsn, expdatasn=datasn,
                            residual=residual, data=segment))
    return out
