"""The host interface of one drive over TCP: frames in, a TapeSession, frames out.

Each command is handled as soon as its frame is in (the TapeSession is synchronous,
so commands from every host connection to one drive run one at a time, in order).
A WRITE_BLOCK body goes to the cipher without a construct parse; a block read goes
out as header then data.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from protocol import BlockData, DecodeError, HeaderInfo, HostResult, WriteBlock, decode, encode, frame_header
from protocol.constants import MAX_BLOCK_SIZE, HostStatus, MessageType
from protocol.ids import ZERO_KEY_ID
from protocol.sense import Condition, sense_for

from .framing import MAX_HOST_FRAME, FramedProtocol

if TYPE_CHECKING:
    from .service import HostedDrive

log = logging.getLogger("t10k.host")


class HostServerProtocol(FramedProtocol):
    def __init__(self, hosted: HostedDrive) -> None:
        super().__init__(self._frame, max_remaining=MAX_HOST_FRAME)
        self.hosted = hosted

    def _refusal(self, condition: Condition, detail: str) -> HostResult:
        session = self.hosted.tape
        return HostResult(HostStatus.CHECK_CONDITION, sense_for(condition, session.profile), ZERO_KEY_ID,
                          session.position, detail)

    def _tap(self, direction: str, *parts: bytes | memoryview) -> None:
        if self.hosted.host.has_tap and self.transport is not None:
            peer = self.transport.get_extra_info("peername") or ("?", 0)
            local = (self.hosted.ip, self.hosted.host.config.host_port)
            src, dst = (peer, local) if direction == "in" else (local, peer)
            self.hosted.host.tap(direction, "tcp", src, dst, b"".join(bytes(p) for p in parts))

    def _frame(self, info: HeaderInfo, header: bytes, body: memoryview) -> None:
        session, now = self.hosted.tape, time.time()
        self._tap("in", header, body)
        try:
            if info.message_type is MessageType.WRITE_BLOCK and not info.flags:
                if len(body) > MAX_BLOCK_SIZE:
                    reply: object = self._refusal(Condition.BLOCK_TOO_LARGE,
                                                  f"block of {len(body)} octets; at most {MAX_BLOCK_SIZE}")
                    out = None
                else:
                    # No parse, no copy: the block is encrypted straight from the receive buffer.
                    reply, out = session.handle(WriteBlock(body), now)  # type: ignore[arg-type]
            else:
                reply, out = session.handle(decode(header + bytes(body)).message, now)
        except DecodeError as exc:
            self.protocol_error(exc)
            return
        if out is not None:
            self.hosted.apply(out)
        if isinstance(reply, BlockData):
            head = frame_header(MessageType.BLOCK_DATA, len(reply.data), sequence=info.sequence, reply=True)
            self.write(head, reply.data)
            self._tap("out", head, reply.data)
        else:
            data = encode(reply, sequence=info.sequence, reply=True)  # type: ignore[arg-type]
            self.write(data)
            self._tap("out", data)

    def protocol_error(self, exc: DecodeError) -> None:
        self.hosted.host.counters.decode_errors[exc.reason.name] += 1
        peer = self.transport.get_extra_info("peername") if self.transport else None
        log.info("drive %s: closing host connection from %s: %s", self.hosted.ip, peer, exc)
        if self.transport is not None and not self.transport.is_closing():
            self.write(encode(self._refusal(Condition.INVALID_REQUEST, str(exc)), reply=True))
        super().protocol_error(exc)
