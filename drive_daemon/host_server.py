"""The host interface of one drive over TCP: frames in, a TapeSession, frames out.

The data path avoids copies it can: a WRITE_BLOCK body goes from the stream to the
cipher without a construct parse, and a block read goes out as header then data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from protocol import BlockData, DecodeError, HostResult, WriteBlock, decode, decode_header, encode, frame_header
from protocol.constants import HEADER_SIZE, MAX_BLOCK_SIZE, HostStatus, MessageType
from protocol.ids import ZERO_KEY_ID
from protocol.sense import Condition, sense_for

if TYPE_CHECKING:
    from .service import HostedDrive

log = logging.getLogger("t10k.host")


async def serve_host(hosted: HostedDrive, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    session = hosted.tape
    peer = writer.get_extra_info("peername") or ("?", 0)
    try:
        while True:
            try:
                header = await reader.readexactly(HEADER_SIZE)
            except asyncio.IncompleteReadError:
                return
            info = decode_header(header)
            if info.message_type is MessageType.WRITE_BLOCK and info.body_length > MAX_BLOCK_SIZE:
                await reader.readexactly(info.remaining)  # keep the stream in step, refuse the block
                reply = HostResult(HostStatus.CHECK_CONDITION, sense_for(Condition.BLOCK_TOO_LARGE, session.profile),
                                   ZERO_KEY_ID, session.position,
                                   f"block of {info.body_length} octets; at most {MAX_BLOCK_SIZE}")
                writer.write(encode(reply, sequence=info.sequence, reply=True))
                continue
            body = await reader.readexactly(info.remaining)
            async with hosted.tape_lock:  # one command at a time per drive, whichever host sends it
                if info.message_type is MessageType.WRITE_BLOCK and not info.flags:
                    reply_msg, out = session.handle(WriteBlock(body), time.time())  # no parse: the body is the block
                else:
                    request = decode(header + body)
                    reply_msg, out = session.handle(request.message, time.time())
                hosted.apply(out)
            if isinstance(reply_msg, BlockData):
                writer.write(frame_header(MessageType.BLOCK_DATA, len(reply_msg.data), sequence=info.sequence,
                                          reply=True))
                writer.write(reply_msg.data)
            else:
                writer.write(encode(reply_msg, sequence=info.sequence, reply=True))  # type: ignore[arg-type]
            if writer.transport.get_write_buffer_size() > 4 * MAX_BLOCK_SIZE:
                await writer.drain()
    except DecodeError as exc:
        hosted.host.counters.decode_errors[exc.reason.name] += 1
        log.info("drive %s: closing host connection from %s: %s", hosted.ip, peer[0], exc)
        writer.write(encode(HostResult(HostStatus.CHECK_CONDITION, sense_for(Condition.INVALID_REQUEST, session.profile),
                                       ZERO_KEY_ID, session.position, str(exc)), reply=True))
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        log.info("drive %s: host connection from %s ended: %s", hosted.ip, peer[0], exc)
    finally:
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()
