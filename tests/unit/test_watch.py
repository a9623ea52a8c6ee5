"""What ``t10k kms watch`` prints for a stream of MQTT messages (no broker: the Watcher is sans-I/O)."""

from __future__ import annotations

import json

from kms_client.watch import Watcher

T = 1_800_000_000.0
TOKEN = "t10k/tokyo/token/127.0.0.21/state"
DRIVE = "t10k/tokyo/drive/5700000000000001/state"
ALIVE = "t10k/tokyo/daemon/token-127.0.0.21/availability"


def token(errors: list[dict[str, str]], published: str = "2027-01-15T08:00:02.000Z") -> dict[str, object]:
    return {"mode": "OKT", "led3": "SOLID_GREEN", "error_led": "OFF", "errors": errors,
            "daemon": "token-127.0.0.21", "published": published}


def test_lines_start_with_the_time_published_and_count_errors_in_words() -> None:
    w = Watcher()
    [line] = w.feed(TOKEN, token([]), retained=True, received=T)
    assert line == "2027-01-15 08:00:02Z tokyo token 127.0.0.21: OKT LED3 SOLID_GREEN error LED OFF, no errors"
    [line] = w.feed(TOKEN, token([{"csn": "57"}]), retained=False, received=T)
    assert line.endswith(", 1 error")


def test_a_state_re_sent_unchanged_is_shown_once() -> None:
    w = Watcher()
    assert len(w.feed(TOKEN, token([]), retained=True, received=T)) == 1
    assert w.feed(TOKEN, token([], published="2027-01-15T09:00:00.000Z"), retained=False, received=T) == []
    alert = {"type": "ErrorRecorded", "csn": "57", "error_code": "00006109 (MISSING_KEY)", "key_id": "0a",
             "published": "2027-01-15T09:00:01.000Z"}
    assert w.feed("t10k/tokyo/token/127.0.0.21/event", alert, retained=False, received=T)
    assert w.feed("t10k/tokyo/token/127.0.0.21/event", alert, retained=False, received=T) == []  # redelivered


def test_a_dead_daemon_and_its_entities_show_offline_in_either_order() -> None:
    will = {"online": False, "reason": "connection lost", "daemon": "token-127.0.0.21"}
    w = Watcher()
    w.feed(TOKEN, token([]), retained=True, received=T)
    [line] = w.feed(ALIVE, will, retained=True, received=T)
    assert line == "(earlier)            tokyo daemon token-127.0.0.21 OFFLINE (connection lost): token 127.0.0.21"
    w = Watcher()
    w.feed(ALIVE, will, retained=True, received=T)
    [line] = w.feed(TOKEN, token([]), retained=True, received=T)
    assert line.endswith("[daemon offline]")
    [line] = w.feed(ALIVE, {"online": True, "daemon": "token-127.0.0.21", "published": "2027-01-15T10:00:00Z"},
                    retained=False, received=T)
    assert line == "2027-01-15 10:00:00Z tokyo daemon token-127.0.0.21 online: token 127.0.0.21"


def test_json_lines_carry_time_retained_and_offline() -> None:
    w = Watcher(as_json=True)
    w.feed(ALIVE, {"online": False, "reason": "stopped", "daemon": "token-127.0.0.21",
                   "published": "2027-01-15T08:00:09.000Z"}, retained=True, received=T)
    [line] = w.feed(DRIVE, {"led": "RED", "daemon": "token-127.0.0.21", "published": "2027-01-15T08:00:03.000Z"},
                    retained=True, received=T)
    row = json.loads(line)
    assert (row["time"], row["retained"], row["offline"], row["payload"]["led"]) == (
        "2027-01-15 08:00:03Z", True, True, "RED")


def test_a_large_drive_host_is_summarised() -> None:
    w = Watcher()
    for i in range(10):
        w.feed(f"t10k/lab/drive/57000000000000{i:02d}/state", {"led": "RED", "daemon": "drives-127.0.0.101"},
               retained=True, received=T)
    [line] = w.feed("t10k/lab/daemon/drives-127.0.0.101/availability", {"online": False, "reason": "stopped"},
                    retained=False, received=T)
    assert line.endswith("drive 5700000000000003 and 6 more") and "OFFLINE (stopped)" in line
