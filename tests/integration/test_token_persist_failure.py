"""The token's persistence never dies silently (issue 13, finding 9).

A live token daemon (real sockets) whose state directory stops taking writes refuses the
KMS's writes with a reply naming the state file and the OS error, keeps on disk only what it
acknowledged, retries in the background and accepts writes again once the disk is fixed.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from kms_client.builders import build_ekt
from lab.addresses import free_net
from protocol import (
    Message,
    MgmtChallenge,
    MgmtResult,
    ReadStatus,
    Resync,
    TokenStatus,
    decode_header,
    encode_authenticated,
    open_frame,
)
from protocol.constants import HEADER_SIZE, MgmtStatus
from tests.site import TOKEN_A, make_site
from token_daemon.memory import IMAGE_NAME, MemoryStore
from token_daemon.service import TokenConfig, TokenService

pytestmark = pytest.mark.network


async def _ask(ip: str, port: int, message: Message, secret: bytes, counter: int) -> Message:
    reply = await _exchange(ip, port, message, secret, counter)
    if isinstance(reply, MgmtChallenge):  # a blank token: RESYNC below this counter first
        assert isinstance(await _exchange(ip, port, Resync(reply.challenge), secret, counter - 1), MgmtResult)
        reply = await _exchange(ip, port, message, secret, counter)
    return reply


async def _exchange(ip: str, port: int, message: Message, secret: bytes, counter: int) -> Message:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), 5)
    try:
        writer.write(encode_authenticated(message, secret=secret, counter=counter))
        await writer.drain()
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), 10)
        body = await asyncio.wait_for(reader.readexactly(decode_header(header).remaining), 10)
        return open_frame(header + body, secret).message  # type: ignore[return-value]
    finally:
        writer.close()


async def test_an_unwritable_state_dir_refuses_writes_until_fixed(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = make_site(tmp_path, 2)
    secret = site.secrets[TOKEN_A]
    net = free_net()
    state = tmp_path / "tok"
    config = TokenConfig(net.token_ip(0), state, secret, broadcast=net.broadcast, drive_lan_port=net.lan_port,
                         persist_interval_s=0.05, persist_backoff_max_s=0.2)
    ekt = build_ekt(site.kms, site.names, use_pckey=True)
    async with TokenService(config) as token:
        ask = lambda m, c: _ask(config.ip, config.mgmt_port, m, secret, c)  # noqa: E731
        ok = await ask(ekt, 1)
        assert isinstance(ok, MgmtResult) and ok.status is MgmtStatus.OK, ok
        assert MemoryStore(state, secret).load().last_write_counter == 1

        # A directory where the state file's temporary must go: every write fails (even as root).
        blocker = state / (IMAGE_NAME + ".tmp")
        blocker.mkdir()
        with caplog.at_level(logging.ERROR, logger="t10k.token"):
            refused = await ask(ekt, 2)
        assert isinstance(refused, MgmtResult) and refused.status is MgmtStatus.REFUSED, refused
        assert str(state / IMAGE_NAME) in refused.message and "Is a directory" in refused.message
        assert token.persist_error is not None and token.counters.persist_failures >= 1
        assert any(str(state / IMAGE_NAME) in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
        status = await ask(ReadStatus(), 3)  # still answers; the refused write left no trace
        assert isinstance(status, TokenStatus) and status.last_write_counter == 1
        assert MemoryStore(state, secret).load().last_write_counter == 1
        await asyncio.sleep(0.5)  # the background retries keep failing, not dead
        failures = token.counters.persist_failures
        assert failures >= 2

        blocker.rmdir()  # the disk works again
        for _ in range(100):
            if token.persist_error is None:
                break
            await asyncio.sleep(0.05)
        assert token.persist_error is None
        ok = await ask(ekt, 4)
        assert isinstance(ok, MgmtResult) and ok.status is MgmtStatus.OK, ok
        assert MemoryStore(state, secret).load().last_write_counter == 4
