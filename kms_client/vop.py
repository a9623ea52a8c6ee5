"""The KMS's own VOP client: the KMS asks drives over the wire, as an operator's VOP does."""

from __future__ import annotations

import asyncio

from protocol import DecodeError, VopStatus, VopStatusRequest, decode, decode_header, encode
from protocol.constants import HEADER_SIZE, VOP_PORT


async def ask_vop_status(ip: str, *, port: int = VOP_PORT, timeout_s: float = 5.0) -> VopStatus | str:
    """The drive's VOP status, or a sentence saying why there is none."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout_s)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"no VOP answers at {ip}:{port} ({exc or 'timed out'})"
    try:
        writer.write(encode(VopStatusRequest()))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), timeout_s)
        reply = decode(header + await asyncio.wait_for(reader.readexactly(decode_header(header).remaining),
                                                       timeout_s)).message
        return reply if isinstance(reply, VopStatus) else f"{ip} answered {type(reply).__name__}"
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, DecodeError) as exc:
        return f"{ip} did not answer ({exc or 'timed out'})"
    finally:
        writer.close()
