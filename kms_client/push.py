"""The KMS side of the KMS-to-token channel: authenticated requests over TCP."""

from __future__ import annotations

import asyncio

from protocol import AuthenticationError, DecodeError, Message, MgmtResult, decode, decode_header, encode_authenticated
from protocol.constants import HEADER_SIZE, TOKEN_MGMT_PORT, MgmtStatus

from .errors import ReplyLost, ReplyNotAuthentic, TokenRefused, TokenUnreachable, WrongSecret


async def request(
    host: str, message: Message, *, secret: bytes, counter: int, port: int = TOKEN_MGMT_PORT, timeout_s: float = 10.0
) -> Message:
    """Send one authenticated request and return the token's verified reply.

    Raises TokenUnreachable when nothing was sent, ReplyLost when the request may have
    reached the token but no complete answer came back, WrongSecret when the answer does
    not verify, TokenRefused for an authentic refusal."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout_s)
    except (OSError, asyncio.TimeoutError) as exc:
        raise TokenUnreachable(f"no token answers at {host}:{port} ({exc or 'timed out'}); is it running there?") from None
    try:
        writer.write(encode_authenticated(message, secret=secret, counter=counter, sequence=counter % 2**32))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), timeout_s)
        info = decode_header(header)
        rest = await asyncio.wait_for(reader.readexactly(info.remaining), timeout_s)
        frame = decode(header + rest)
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
        reply_counter = frame.verify(secret)
    except (AuthenticationError, DecodeError):
        raise WrongSecret(
            f"the reply from {host}:{port} does not verify under this token's secret: a different token is at "
            f"that address, or it was provisioned with another secret"
        ) from None
    if reply_counter != counter:
        raise ReplyNotAuthentic(f"the reply from {host}:{port} answers counter {reply_counter}, not {counter}")
    reply = frame.message
    if isinstance(reply, MgmtResult) and reply.status is not MgmtStatus.OK:
        raise TokenRefused(f"the token at {host}:{port} refused: {reply.status.name}: {reply.message}")
    return reply
