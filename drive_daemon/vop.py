"""A Virtual Operator Panel client: "File > Connect to Drive", then ask."""

from __future__ import annotations

import asyncio

from protocol import (
    DecodeError,
    Message,
    VopChallenge,
    VopChallengeRequest,
    VopLoad,
    VopResult,
    VopStatus,
    VopStatusRequest,
    VopUnload,
    decode,
    decode_header,
    encode,
)
from protocol.constants import HEADER_SIZE, VOP_PORT

from protocol.timestamps import format_timestamp

from .credential import reset_request
from .errors import DriveDaemonError


class VopError(DriveDaemonError):
    """The drive could not be reached, or answered with something that is not a VOP reply."""


async def _connect(ip: str, port: int, timeout_s: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(asyncio.open_connection(ip, port), timeout_s)
    except (OSError, asyncio.TimeoutError) as exc:
        raise VopError(f"cannot connect to the drive's VOP at {ip}:{port} ({exc or 'timed out'}); is a drive running there?") from None


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: Message, ip: str, port: int,
                    timeout_s: float) -> Message:
    try:
        writer.write(encode(request))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), timeout_s)
        rest = await asyncio.wait_for(reader.readexactly(decode_header(header).remaining), timeout_s)
        return decode(header + rest).message
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, OSError) as exc:
        raise VopError(f"the drive at {ip}:{port} did not answer ({exc or 'timed out'})") from None
    except DecodeError as exc:
        raise VopError(f"the drive at {ip}:{port} sent an invalid reply: {exc}") from None


async def _ask(ip: str, request: Message, port: int, timeout_s: float) -> Message:
    reader, writer = await _connect(ip, port, timeout_s)
    try:
        return await _exchange(reader, writer, request, ip, port, timeout_s)
    finally:
        writer.close()


async def vop_status(ip: str, *, port: int = VOP_PORT, timeout_s: float = 5.0) -> VopStatus:
    reply = await _ask(ip, VopStatusRequest(), port, timeout_s)
    if not isinstance(reply, VopStatus):
        raise VopError(f"the drive at {ip} answered {type(reply).__name__}: {getattr(reply, 'message', '')}")
    return reply


async def vop_reset(ip: str, credential: bytes, *, port: int = VOP_PORT, timeout_s: float = 5.0) -> VopResult:
    """VOP Reset Drive: ask this connection's challenge, answer it with the drive host's
    service credential (protocol version 3)."""
    reader, writer = await _connect(ip, port, timeout_s)
    try:
        challenge = await _exchange(reader, writer, VopChallengeRequest(), ip, port, timeout_s)
        if not isinstance(challenge, VopChallenge):
            raise VopError(f"the drive at {ip} answered {type(challenge).__name__} to a challenge request: "
                           f"{getattr(challenge, 'message', '')}")
        reply = await _exchange(reader, writer, reset_request(credential, challenge), ip, port, timeout_s)
    finally:
        writer.close()
    if not isinstance(reply, VopResult):
        raise VopError(f"the drive at {ip} answered {type(reply).__name__} to a reset")
    return reply


async def vop_load(ip: str, volser: str, *, port: int = VOP_PORT, timeout_s: float = 30.0) -> VopResult:
    """The operator loads cartridge ``volser`` of the drive's library."""
    return await _result(ip, VopLoad(volser), port, timeout_s)


async def vop_unload(ip: str, *, port: int = VOP_PORT, timeout_s: float = 30.0) -> VopResult:
    """The operator unloads the drive's cartridge and takes it out."""
    return await _result(ip, VopUnload(), port, timeout_s)


async def _result(ip: str, request: Message, port: int, timeout_s: float) -> VopResult:
    reply = await _ask(ip, request, port, timeout_s)
    if not isinstance(reply, VopResult):
        raise VopError(f"the drive at {ip} answered {type(reply).__name__} to {type(request).__name__}")
    return reply


def vop_fields(s) -> dict[str, object]:  # type: ignore[no-untyped-def]
    first, second = s.status_fields
    return {
        "csn": s.csn.hex(), "led": s.led.name, "status1": first, "status2": second,
        "encryption": s.encryption_enabled, "need_okt": s.need_okt, "holding_keys": s.holding_keys,
        "reset": s.reset, "okt_timestamp": s.okt_timestamp, "okt_time": format_timestamp(s.okt_timestamp),
        "device_key_timestamp": s.device_key_timestamp, "media_keys": s.media_key_count,
        "write_key_id": s.write_key_id.hex(), "encrypting_model": s.encrypting_model,
    }
