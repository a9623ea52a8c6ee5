"""The live library model (sans-I/O): states, alerts once, offline daemons by their last will."""

from __future__ import annotations

from kms_console.library import Library

DRIVE = "t10k/tokyo/drive/5700000000000001/state"
TOKEN = "t10k/tokyo/token/127.0.0.21/state"
ALERT = "t10k/tokyo/token/127.0.0.21/event"
WILL = "t10k/tokyo/daemon/drives-127.0.0.101/availability"


def test_states_are_kept_and_repeats_are_no_change() -> None:
    lib = Library()
    state = {"led": "AMBER", "status1": "Encryption", "daemon": "drives-127.0.0.101", "ip": "127.0.0.101"}
    assert lib.feed(DRIVE, state, retained=True).changed
    assert not lib.feed(DRIVE, state, retained=False).changed
    assert lib.feed(DRIVE, state | {"led": "RED"}, retained=False).changed
    assert lib.drives["5700000000000001"]["led"] == "RED" and lib.drives["5700000000000001"]["site"] == "tokyo"
    assert not lib.feed("t10k/tokyo/what", {}, retained=False).changed and not lib.feed("other/x", {}, retained=False).changed


def test_a_token_error_is_one_alert_even_when_delivered_twice() -> None:
    lib = Library()
    event = {"type": "ErrorRecorded", "csn": "5700000000000002", "error_code": "00006109 (MISSING_KEY)",
             "key_id": "0a0b0c0d00000063", "published": "2027-01-15T08:00:02Z"}
    change = lib.feed(ALERT, event, retained=False)
    assert change.alert is not None and change.alert.key_id == "0a0b0c0d00000063"
    assert "key ID 0a0b0c0d00000063" in change.alert.text("token-A", "drive-02")
    assert lib.feed(ALERT, event, retained=False).alert is None  # QoS 1 redelivery
    assert lib.alert_total == 1 and len(lib.alerts) == 1


def test_a_dead_daemons_drives_are_offline_not_their_last_state() -> None:
    lib = Library()
    lib.feed(WILL, {"online": True, "daemon": "drives-127.0.0.101"}, retained=True)
    lib.feed(DRIVE, {"led": "RED", "daemon": "drives-127.0.0.101"}, retained=True)
    assert not lib.is_offline(lib.drives["5700000000000001"])
    assert lib.feed(WILL, {"online": False, "reason": "connection lost"}, retained=True).changed  # the last will
    assert lib.is_offline(lib.drives["5700000000000001"])
    assert lib.offline_reason(lib.drives["5700000000000001"]) == "connection lost"
    token = {"mode": "OKT", "daemon": "token-127.0.0.21"}
    lib.feed(TOKEN, token, retained=True)
    assert lib.online("token-127.0.0.21") is None and not lib.is_offline(lib.tokens["127.0.0.21"])


async def test_the_hub_wakes_every_waiter_on_a_change_and_times_out_quietly() -> None:
    import asyncio

    from kms_console.live import Hub

    hub = Hub("mqtt://127.0.0.1:1")
    assert await hub.wait(0, 0.01) == 0  # no change: the same version, no error
    waiters = [asyncio.ensure_future(hub.wait(0, 5.0)) for _ in range(3)]
    await asyncio.sleep(0)
    await hub.feed(DRIVE, {"led": "RED"}, retained=True)
    assert await asyncio.gather(*waiters) == [1, 1, 1]
    for _ in range(50):  # many short waits cancelled by their timeout leave the hub usable
        await hub.wait(1, 0.001)
    assert await hub.wait(0, 5.0) == 1


async def test_a_stream_ends_after_its_limit_and_says_so() -> None:
    """A Library screen left open stops, instead of reconnecting and so keeping its session alive."""
    from kms_console.live import PAUSED, Hub, stream

    hub = Hub("mqtt://127.0.0.1:1")

    async def connected() -> bool:
        return False

    events = [e async for e in stream(hub, lambda: ("<p>drawn</p>", []), connected, 0, limit_s=0.2)]
    assert events[0] == b"event: library\ndata: <p>drawn</p>\n\n"
    assert events[-1] == f"event: end\ndata: {PAUSED}\n\n".encode()
