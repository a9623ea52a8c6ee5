"""The KMS side of the KMS-to-token channel: sealed requests over TCP.

Every request and reply is sealed under the token secret (AES-256-GCM, protocol/codec.py).
A token that lost its replay counter answers MGMT_CHALLENGE; ``request_resyncing`` then
sends RESYNC with that challenge and a fresh counter, and the request again, above it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from protocol import (
    AuthenticationError,
    DecodeError,
    Message,
    MgmtChallenge,
    MgmtResult,
    Resync,
    decode_header,
    encode_authenticated,
    open_frame,
)
from protocol.constants import HEADER_SIZE, TOKEN_MGMT_PORT, MgmtStatus

from .errors import CounterLost, ReplyLost, ReplyNotAuthentic, TokenRefused, TokenUnreachable, WrongSecret


async def request(
    host: str, message: Message, *, secret: bytes, counter: int, port: int = TOKEN_MGMT_PORT, timeout_s: float = 10.0
) -> Message:
    """Send one sealed request and return the token's authentic reply.

    Raises TokenUnreachable when nothing was sent, ReplyLost when the request may have
    reached the token but no complete answer came back, WrongSecret when the answer does
    not open under the secret, TokenRefused for an authentic refusal, CounterLost (a
    TokenRefused) when the token has no counter and asks for a RESYNC."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError) as exc:
        raise TokenUnreachable(f"no token answers at {host}:{port} ({exc or 'timed out'}); is it running there?") from None
    try:
        writer.write(encode_authenticated(message, secret=secret, counter=counter, sequence=counter % 2**32))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), timeout_s)
        info = decode_header(header)
        data = header + await asyncio.wait_for(reader.readexactly(info.remaining), timeout_s)
    except asyncio.IncompleteReadError:
        raise ReplyLost(f"the token at {host}:{port} closed the connection before it answered") from None
    except (OSError, asyncio.TimeoutError) as exc:
        raise ReplyLost(f"the token at {host}:{port} stopped answering ({exc or f'no answer in {timeout_s:g} s'})") from None
    except DecodeError as exc:
        raise ReplyNotAuthentic(f"the reply from {host}:{port} is not a valid message: {exc}") from None
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
    try:
        frame = open_frame(data, secret)
    except AuthenticationError:
        raise WrongSecret(
            f"the reply from {host}:{port} does not open under this token's secret: a different token is at "
            f"that address, or it was provisioned with another secret"
        ) from None
    except DecodeError as exc:
        raise ReplyNotAuthentic(f"the reply from {host}:{port} is not a valid message: {exc}") from None
    if frame.counter != counter or not frame.is_reply:
        raise ReplyNotAuthentic(f"the reply from {host}:{port} answers counter {frame.counter}, not {counter}")
    reply = frame.message
    if isinstance(reply, MgmtChallenge):
        raise CounterLost(f"the token at {host}:{port} has no replay counter (blank, or its state directory was "
                          f"moved aside): it asks for a RESYNC", reply.challenge)
    if isinstance(reply, MgmtResult) and reply.status is not MgmtStatus.OK:
        raise TokenRefused(f"the token at {host}:{port} refused: {reply.status.name}: {reply.message}")
    return reply  # type: ignore[return-value]


async def resync(host: str, challenge: bytes, *, secret: bytes, counter: int, port: int = TOKEN_MGMT_PORT,
                 timeout_s: float = 10.0) -> None:
    """RESYNC: ``counter`` becomes the floor of a token that lost its counter."""
    try:
        await request(host, Resync(challenge), secret=secret, counter=counter, port=port, timeout_s=timeout_s)
    except CounterLost:
        raise TokenRefused(f"the token at {host}:{port} did not take the RESYNC (it asked for another challenge: "
                           f"it restarted meanwhile?); try again") from None


async def request_resyncing(
    host: str, message: Message, *, secret: bytes, next_counter: Callable[[], int], port: int = TOKEN_MGMT_PORT,
    timeout_s: float = 10.0, on_resync: Callable[[int], None] | None = None,
) -> Message:
    """``request`` with a counter from ``next_counter``; a token that lost its counter is
    resynchronised (one extra round trip, ``on_resync`` told the new floor) and asked again."""
    try:
        return await request(host, message, secret=secret, counter=next_counter(), port=port, timeout_s=timeout_s)
    except CounterLost as lost:
        floor = next_counter()
        try:
            await resync(host, lost.challenge, secret=secret, counter=floor, port=port, timeout_s=timeout_s)
        except TokenRefused:
            pass  # the challenge was spent by a concurrent RESYNC: ask again, above its floor
        else:
            if on_resync is not None:
                on_resync(floor)
    try:
        return await request(host, message, secret=secret, counter=next_counter(), port=port, timeout_s=timeout_s)
    except CounterLost:
        raise TokenRefused(f"the token at {host}:{port} lost its counter again right after a RESYNC (restarting?)") from None
