"""The iSCSI portal and our initiator over real loopback sockets."""

from __future__ import annotations

import asyncio

import pytest

from drive_daemon.iscsi import IscsiConfig, IscsiPortal
from lab.addresses import free_net
from host.iscsi_client import IscsiClient, IscsiClientError, discover
from protocol.iscsi import LoginRequest, NopIn, PduReader, TmfFunction, TmfResult, encode_pdu_bytes, encode_text
from protocol.iscsi.negotiation import DEFAULTS
from tests.iscsi_lun import MemoryTapeLun
from tests.unit.iscsi.pair import TARGET

pytestmark = pytest.mark.network

IP = free_net().drive_ip(0)  # beside any lab, the README's daemons included
BLOCK = bytes(range(256)) * 1024


def write6(n: int) -> bytes:
    return bytes([0x0A, 0]) + n.to_bytes(3, "big") + b"\0"


def read6(n: int) -> bytes:
    return bytes([0x08, 0]) + n.to_bytes(3, "big") + b"\0"


class Recorder:
    def __init__(self) -> None:
        self.records: list[tuple[str, tuple[str, int], tuple[str, int], bytes]] = []

    def __call__(self, direction: str, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> None:
        self.records.append((direction, src, dst, data))


class OutputLun(MemoryTapeLun):
    """Hands an output with every write, to see the portal's callback receive them."""

    def execute(self, nexus, cdb, data_out, now):  # type: ignore[no-untyped-def]
        outcome = super().execute(nexus, cdb, data_out, now)
        if cdb[0] == 0x0A:
            outcome.output = ("wrote", len(data_out))
        return outcome


@pytest.mark.parametrize("digests", [False, True])
async def test_discover_login_write_read_logout(digests: bool) -> None:
    lun, tap, outputs = OutputLun(), Recorder(), []
    async with IscsiPortal(IscsiConfig(target_name=TARGET), lun, host=IP, tap=tap, on_output=outputs.append) as portal:
        assert await discover(IP) == [(TARGET, f"{IP}:3260,1")]
        async with IscsiClient(IP, digests=digests) as client:  # discovers the target itself
            assert client.target == TARGET
            assert (await client.execute(bytes(6))).status == 2
            assert (await client.execute(bytes(6))).status == 0
            for size in (1, 1000, 65536, len(BLOCK), 2 * 1024 * 1024 - 8):
                data = (BLOCK * 8)[:size]
                assert (await client.execute(write6(size), data_out=data)).status == 0
            assert (await client.execute(bytes([1, 0, 0, 0, 0, 0]))).status == 0
            for size in (1, 1000, 65536, len(BLOCK), 2 * 1024 * 1024 - 8):
                reply = await client.execute(read6(size), expected_in=size)
                assert (reply.status, reply.data, reply.residual) == (0, (BLOCK * 8)[:size], 0)
            # concurrent commands are answered in order
            replies = await asyncio.gather(*(client.execute(bytes([0x12, 0, 0, 0, 36, 0]), expected_in=36)
                                             for _ in range(20)))
            assert {r.data[8:16] for r in replies} == {b"STK     "}
        await asyncio.sleep(0.05)
        assert lun.lost and not portal.connections
    assert outputs == [("wrote", n) for n in (1, 1000, 65536, len(BLOCK), 2 * 1024 * 1024 - 8)]
    inbound = b"".join(r[3] for r in tap.records if r[0] == "in")
    assert BLOCK in inbound
    assert {r[2] for r in tap.records if r[0] == "in"} == {(IP, 3260)}
    assert not portal.errors


async def test_chap_over_sockets() -> None:
    config = IscsiConfig(target_name=TARGET, chap=("host", "twelve-chars-secret"))
    async with IscsiPortal(config, MemoryTapeLun(), host=IP):
        async with IscsiClient(IP, target=TARGET, chap=("host", "twelve-chars-secret")) as client:
            assert (await client.execute(bytes(6))).status == 2
        with pytest.raises(IscsiClientError, match="authentication failure"):
            async with IscsiClient(IP, target=TARGET, chap=("host", "not-the-secret-at-all")):
                pass


async def test_tmf_and_nop_over_sockets() -> None:
    lun = MemoryTapeLun()
    async with IscsiPortal(IscsiConfig(target_name=TARGET), lun, host=IP):
        async with IscsiClient(IP, target=TARGET) as client:
            assert await client.nop(b"hello") == b"hello"
            assert await client.task_management(TmfFunction.LOGICAL_UNIT_RESET) == TmfResult.FUNCTION_COMPLETE
            assert lun.resets == 1


async def _raw_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    keys = {"InitiatorName": "iqn.test:raw", "SessionType": "Normal", "TargetName": TARGET}
    writer.write(encode_pdu_bytes(LoginRequest(transit=True, csg=1, nsg=3, isid=b"\x80" + bytes(5), itt=1, cmdsn=1,
                                               data=encode_text(keys))))
    header = await reader.readexactly(48)
    await reader.readexactly((int.from_bytes(header[5:8], "big") + 3) & ~3)
    assert header[0] == 0x23 and header[36] == 0


async def test_malformed_peer_is_dropped_and_counted_while_others_are_served() -> None:
    lun = MemoryTapeLun()
    async with IscsiPortal(IscsiConfig(target_name=TARGET), lun, host=IP) as portal:
        async with IscsiClient(IP, target=TARGET) as good:
            await good.execute(bytes(6))
            for garbage in (b"GET / HTTP/1.1\r\n\r\n" + bytes(40), bytes([0x41]) + bytes(47)):
                reader, writer = await asyncio.open_connection(IP, 3260)
                writer.write(garbage)
                assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the target
                writer.close()
            reader, writer = await asyncio.open_connection(IP, 3260)
            await _raw_login(reader, writer)
            writer.write(bytes([0x1D]) + bytes(47))  # unknown opcode in full feature phase: a Reject
            header = await asyncio.wait_for(reader.readexactly(48), 5)
            assert header[0] == 0x3F and header[2] == 0x05
            writer.close()
            assert (await good.execute(bytes(6))).status == 0
    assert portal.errors["NOT_LOGGED_IN"] == 1
    assert portal.errors["UNKNOWN_OPCODE"] == 1
    assert portal.errors["TOO_LARGE"] == 1  # "GET / H..." read as a BHS declares 3 MB of data


async def test_idle_connection_is_pinged_then_closed() -> None:
    config = IscsiConfig(target_name=TARGET, idle_timeout_s=0.4)
    async with IscsiPortal(config, MemoryTapeLun(), host=IP) as portal:
        reader, writer = await asyncio.open_connection(IP, 3260)
        await _raw_login(reader, writer)
        pdu_reader = PduReader(max_data_segment=int(DEFAULTS["MaxRecvDataSegmentLength"]))
        pdu_reader.feed(await asyncio.wait_for(reader.readexactly(48), 5))
        assert isinstance(pdu_reader.next_pdu(), NopIn)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
        assert portal.errors["IDLE_TIMEOUT"] == 1
        async with IscsiClient(IP, target=TARGET, timeout=5) as client:  # ours answers the pings: it stays
            await asyncio.sleep(1.0)
            assert (await client.execute(bytes(6))).status == 2
        assert portal.errors["IDLE_TIMEOUT"] == 1


async def test_backlog_and_many_connections() -> None:
    async with IscsiPortal(IscsiConfig(target_name=TARGET, backlog=256), MemoryTapeLun(), host=IP) as portal:
        clients = [IscsiClient(IP, target=TARGET) for _ in range(50)]
        await asyncio.gather(*(c.__aenter__() for c in clients))
        assert len(portal.connections) == 50
        await asyncio.gather(*(c.execute(bytes(6)) for c in clients))
        await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients))



async def test_same_initiator_and_isid_reinstates_the_session() -> None:
    lun = MemoryTapeLun()
    async with IscsiPortal(IscsiConfig(target_name=TARGET), lun, host=IP) as portal:
        first = IscsiClient(IP, target=TARGET)
        await first.__aenter__()
        await first.execute(bytes(6))
        second = IscsiClient(IP, target=TARGET)
        second.conn.isid = first.conn.isid  # the same I_T nexus logs in again (after a crash, say)
        await second._open()
        assert lun.lost == [f"{second.initiator},i,0x{first.conn.isid.hex()}"]  # the old nexus ended first
        assert (await second.execute(bytes(6))).status == 2  # a new nexus: its own unit attention
        with pytest.raises(IscsiClientError):
            await first.execute(bytes(6))
        await second.__aexit__(None, None, None)
        first.close()
        assert portal.errors["SESSION_REINSTATED"] == 1
