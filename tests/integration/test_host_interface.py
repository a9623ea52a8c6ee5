"""The host interface on real sockets: backups, the missing key path to the KMS, bad input."""

from __future__ import annotations

import asyncio
import os

import pytest

from drive_daemon.cartridge import Cartridge
from drive_daemon.host_client import CheckCondition, HostClient
from kms_client import station
from lab.cluster import Lab
from protocol.constants import HOST_PORT, MAX_BLOCK_SIZE, ErrorCode, NextBlockStatus, TokenLed
from protocol.sense import Condition
from tests.integration.conftest import POOL, enrol_and_arm

pytestmark = pytest.mark.network
BLOCK = 256 * 1024


async def test_write_and_read_back_large_blocks_encrypted(lab: Lab) -> None:
    key = await enrol_and_arm(lab)
    Cartridge.create(lab.library, "VOL001")
    blocks = [os.urandom(BLOCK) for _ in range(12)]
    async with HostClient(lab.drive_ips["drive-01"]) as host:
        await host.load("VOL001")
        assert await host.write_blocks(blocks, window=4) == 12
        await host.write_filemarks(1)
        await host.rewind()
        status = await host.encryption_status()
        assert (status.write_key_id, status.next_status, status.next_key_id) == (key, NextBlockStatus.ENCRYPTED, key)
        assert [b async for b in host.read_blocks(12, window=4)] == blocks
        with pytest.raises(CheckCondition) as info:
            await host.read()
        assert info.value.is_condition(Condition.FILEMARK)
        position = await host.position()
        assert (position.block, position.file, position.object_count) == (13, 1, 13)
        await host.unload()
    raw = (lab.library / "VOL001.tape").read_bytes()
    assert blocks[0][:64] not in raw and key in raw


async def test_missing_key_reaches_the_host_the_token_and_the_kms(lab: Lab) -> None:
    old_key = await enrol_and_arm(lab)
    Cartridge.create(lab.library, "OLD")
    async with HostClient(lab.drive_ips["drive-01"]) as host:
        await host.load("OLD")
        await host.write(b"under the first key")
        await host.write_filemarks(1)
        await host.unload()
    kms = lab.kms
    new_key = kms.create_key()
    kms.create_key_set("KS2")
    kms.add_key_to_set("KS2", new_key)
    mapping = kms.set_mapping(POOL, ["KS2"], new_key)  # the old key left the mapping
    await station.write_okt(kms, "token-A", POOL)
    await lab.wait_until(lambda s: s.okt_timestamp == mapping.timestamp, "rekeyed")
    async with HostClient(lab.drive_ips["drive-01"]) as host:
        await host.load("OLD")
        with pytest.raises(CheckCondition) as info:
            await host.read()
        assert str(info.value.sense) == "3/2605/6109" and info.value.result.key_id == old_key
        await host.unload()
    await asyncio.sleep(0.2)
    status = await station.token_status(kms, "token-A")
    assert status.error_led is TokenLed.FLASHING_RED
    assert [(e.csn, e.error_code, e.key_id) for e in status.errors] == [
        (lab.drive_csns["drive-01"], ErrorCode.MISSING_KEY, old_key)]
    # The seed's recovery: extend the mapping with the old key, write the OKT, restart the job.
    mapping = kms.set_mapping(POOL, ["KS1", "KS2"], new_key)
    await station.write_okt(kms, "token-A", POOL)
    await lab.wait_until(lambda s: s.okt_timestamp == mapping.timestamp, "recovered")
    async with HostClient(lab.drive_ips["drive-01"]) as host:
        await host.load("OLD")
        assert await host.read() == b"under the first key"
    assert (await station.token_status(kms, "token-A")).errors == ()


async def test_bad_input_gets_clear_errors_and_the_cartridge_is_intact(lab: Lab) -> None:
    await enrol_and_arm(lab)
    Cartridge.create(lab.library, "KEEP")
    async with HostClient(lab.drive_ips["drive-01"]) as host:
        with pytest.raises(CheckCondition, match="no volume NOPE") as info:
            await host.load("NOPE")
        assert info.value.is_condition(Condition.UNKNOWN_VOLUME)
        with pytest.raises(CheckCondition) as info:
            await host.write(b"no tape")
        assert info.value.is_condition(Condition.NO_TAPE)
        await host.load("KEEP")
        await host.write(b"first")
        with pytest.raises(CheckCondition, match="at most") as info:
            await host.write(bytes(MAX_BLOCK_SIZE + 1))
        assert info.value.is_condition(Condition.BLOCK_TOO_LARGE)
        await host.rewind()
        assert await host.read() == b"first"  # the connection and the cartridge are fine
        await host.unload()
    reader, writer = await asyncio.open_connection(lab.drive_ips["drive-01"], HOST_PORT)
    writer.write(b"T10K\x01\x57" + bytes(10) + os.urandom(7))  # READ_BLOCK with a short body
    writer.write(os.urandom(100))
    await writer.drain()
    try:
        reply = await asyncio.wait_for(reader.read(), 5)  # the drive answers, then hangs up
        assert reply[:4] == b"T10K"
    except ConnectionResetError:
        pass  # or hangs up on the bytes that followed: either way it does not wait forever
    writer.close()
    assert sum(lab.drives.counters.decode_errors.values()) >= 1
    async with HostClient(lab.drive_ips["drive-01"]) as host:
        await host.load("KEEP")
        assert await host.read() == b"first"


async def test_two_hosts_on_one_drive_see_one_tape(lab: Lab) -> None:
    await enrol_and_arm(lab)
    Cartridge.create(lab.library, "SHARED")
    async with HostClient(lab.drive_ips["drive-01"]) as a, HostClient(lab.drive_ips["drive-01"]) as b:
        await a.load("SHARED")
        with pytest.raises(CheckCondition) as info:
            await b.load("SHARED")
        assert info.value.is_condition(Condition.TAPE_LOADED)
        await a.write(b"x")
        assert (await b.position()).block == 1
    async with HostClient(lab.drive_ips["drive-02"]) as other:
        with pytest.raises(CheckCondition) as info:
            await other.load("SHARED")
        assert info.value.is_condition(Condition.VOLUME_IN_USE)
