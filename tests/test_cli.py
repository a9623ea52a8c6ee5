"""One consistent CLI (issue 12): every command takes --json; a thing has one flag everywhere.

Walks ``lab.cli.build_parser()`` itself, so a command added later is checked too.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import build_parser, main
from protocol.cli_options import SHARED, Progress, shared_name

ROOT = Path(__file__).resolve().parents[1]

#: Commands that still lack a shared option, checked to be exactly these so that fixing one
#: means removing it here (none left: `t10k tape new` took --json with issue 9).
KNOWN_GAPS: dict[tuple[str, ...], str] = {}
#: Commands that define a shared option themselves (none left).
NOT_SHARED_YET: set[str] = set()

#: Names that must not come back for a thing that has its one flag.
SYNONYMS = {
    "--ip": {"--addr", "--address", "--host", "--to", "--drive-ip", "--token-ip", "--ip-address"},
    "--broadcast": {"--listen-broadcast", "--bcast", "--broadcast-address", "--lan-broadcast"},
    "--json": {"--as-json", "--format", "--output-json"},
    "--mqtt": {"--broker", "--mqtt-url"},
    "--capture": {"--pcap", "--capture-file"},
}


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...],
                                                                                      argparse.ArgumentParser]]:
    found = []
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    for action in subs:
        for name, child in action.choices.items():
            found += leaves(child, (*path, name))
    return found


def visible_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions if a.help is not argparse.SUPPRESS for s in a.option_strings}


LEAVES = leaves(build_parser())


def test_the_walk_finds_every_part() -> None:
    tops = {path[0] for path, _ in LEAVES}
    assert tops == {"token", "drive", "vop", "host", "tape", "kms", "lab", "pcap"}
    assert len(LEAVES) > 60


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_command_takes_json(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    has = "--json" in visible_options(parser)
    assert has != (path in KNOWN_GAPS), (f"t10k {' '.join(path)}: " + (
        "fixed: remove it from KNOWN_GAPS" if has else "has no --json (every command takes it)"))


@pytest.mark.parametrize(("path", "parser"), LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_one_flag_for_one_thing(path: tuple[str, ...], parser: argparse.ArgumentParser) -> None:
    options = visible_options(parser)
    for canonical, others in SYNONYMS.items():
        clash = others & set(options)
        assert not clash, f"t10k {' '.join(path)}: {sorted(clash)} is spelled {canonical} everywhere"
    if path[0] in NOT_SHARED_YET:
        return
    for flag in SHARED:
        if flag in options:
            assert shared_name(options[flag]) == flag, (
                f"t10k {' '.join(path)} defines {flag} itself: use protocol/cli_options.py")
    # no positional address: it is --ip (an old positional may stay accepted, hidden)
    for action in parser._actions:
        if not action.option_strings and action.help is not argparse.SUPPRESS:
            assert action.dest not in ("ip", "address", "host"), f"t10k {' '.join(path)}: a positional address"


def test_the_same_flag_has_the_same_form_everywhere() -> None:
    forms: dict[str, set[tuple[object, ...]]] = {}
    for path, parser in LEAVES:
        if path[0] in NOT_SHARED_YET:
            continue
        for flag, action in visible_options(parser).items():
            if flag in SHARED:
                forms.setdefault(flag, set()).add((type(action).__name__, action.metavar, action.type, action.dest))
    assert set(forms) == set(SHARED)
    assert {flag: len(f) for flag, f in forms.items()} == dict.fromkeys(SHARED, 1)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_an_address_is_given_with_ip_and_the_old_positional_still_works(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    from protocol.cli_options import finish

    assert finish(parser.parse_args(["vop", "status", "--ip", "127.0.0.9"])).ip == "127.0.0.9"
    assert finish(parser.parse_args(["vop", "status", "127.0.0.9"])).ip == "127.0.0.9"
    assert finish(parser.parse_args(["token", "status", "127.0.0.9", "--secret-file", "s"])).ip == "127.0.0.9"
    with pytest.raises(SystemExit) as missing:
        main(["vop", "reset"])
    assert missing.value.code == 2 and "--ip IP" in capsys.readouterr().err
    with pytest.raises(SystemExit) as both:
        main(["vop", "status", "127.0.0.8", "--ip", "127.0.0.9"])
    assert both.value.code == 2 and "two addresses" in capsys.readouterr().err


def test_the_old_broadcast_name_still_works() -> None:
    parser = build_parser()
    args = parser.parse_args(["drive", "run", "--ip", "127.0.0.9", "--manufacturing", "m", "--state", "s",
                              "--listen-broadcast", "0.0.0.0"])
    assert args.broadcast == "0.0.0.0"


def test_bad_arguments_exit_2_and_failures_exit_1_with_one_line() -> None:
    bad = run("pcap", "decode", str(ROOT / "captures" / "reset.pcap"), "--type", "BOGUS")
    assert bad.returncode == 2 and "invalid choice: 'BOGUS'" in bad.stderr and "KEYS_AVAILABLE" in bad.stderr
    failed = run("tape", "list", "--library", str(ROOT / "no-such-library"))
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.strip().splitlines() == [
        f"t10k: error: library {ROOT / 'no-such-library'} does not exist "
        f"('t10k tape new --library {ROOT / 'no-such-library'} VOLSER' creates one)"]


def test_output_into_a_closed_pipe_stops_quietly() -> None:
    """``t10k pcap decode X | head -1``: no traceback, no "Broken pipe" message. (--json: its
    output is larger than a pipe's buffer, so the decoder is still writing when head leaves.)"""
    decoder = subprocess.Popen([sys.executable, "-m", "lab.cli", "pcap", "decode", str(ROOT / "captures" / "demo.pcap"),
                                "--json"],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert decoder.stdout is not None and decoder.stderr is not None
    first = decoder.stdout.readline()
    decoder.stdout.close()  # what head does once it has its line
    err = decoder.stderr.read().decode()
    assert decoder.wait(60) == 141 and first and err == ""


def test_standby_sync_and_backups_show_progress_on_stderr_only(tmp_path: Path) -> None:
    store = ["--store", str(tmp_path / "kms")]
    assert run("kms", "init", *store, "--no-roles").returncode == 0
    (tmp_path / "backup.key").write_text("ab" * 32)
    assert run("kms", "set-backupkey", *store, "--key-file", str(tmp_path / "backup.key")).returncode == 0
    backup = run("kms", "backup", *store, "--json")
    dump = json.loads(backup.stdout)["dump_id"]
    assert backup.stderr.startswith(f"backup: encrypting a snapshot of {tmp_path / 'kms'}")
    assert f"backup: {dump} written" in backup.stderr
    assert run("kms", "standby", "set", *store, "--dir", str(tmp_path / "standby")).returncode == 0
    synced = run("kms", "standby", "sync", *store, "--json")
    assert json.loads(synced.stdout)["copied"] == [dump]
    assert synced.stderr.splitlines() == [
        f"standby sync: copying 1 new backup set(s) to {tmp_path / 'standby'}", f"standby sync: copied {dump}"]
    again = run("kms", "standby", "sync", *store, "--interval", "0.01", "--count", "2")
    assert again.stdout.strip() == f"0 backup set(s) copied to the standby {tmp_path / 'standby'}"
    assert again.stderr.splitlines() == [
        f"standby sync: round 1 of 2: {tmp_path / 'standby'} has every backup set",
        "standby sync: next round in 0.01 s (Ctrl-C stops)",
        f"standby sync: round 2 of 2: {tmp_path / 'standby'} has every backup set"]


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_is_a_line_per_step_or_a_counter_on_a_terminal() -> None:
    log = _Stream(tty=False)
    p = Progress("replay", 2, stream=log)
    p.step("WRITE_EKT to 127.0.0.21:7020")
    p.step("VOP_STATUS_REQUEST to 127.0.0.101:7030")
    p.close()
    assert log.getvalue() == ("replay: [1/2] WRITE_EKT to 127.0.0.21:7020\n"
                              "replay: [2/2] VOP_STATUS_REQUEST to 127.0.0.101:7030\n")
    term = _Stream(tty=True)
    p = Progress("replay", 2, stream=term)
    p.step("a")
    p.step("b")
    p.close()
    assert term.getvalue() == "\r\x1b[Kreplay: [1/2] a\r\x1b[Kreplay: [2/2] b\n"


def test_an_unexpected_failure_is_still_one_line(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import lab.pcap_cli

    def broken(path: Path) -> list[object]:
        raise RuntimeError("the decoder fell over")

    monkeypatch.setattr(lab.pcap_cli, "read_capture", broken)
    assert main(["pcap", "decode", str(ROOT / "captures" / "reset.pcap")]) == 1
    assert capsys.readouterr().err == ("t10k: error: unexpected RuntimeError: the decoder fell over "
                                       "(a bug: -vv shows the traceback)\n")
    with pytest.raises(RuntimeError):
        main(["-vv", "pcap", "decode", str(ROOT / "captures" / "reset.pcap")])
