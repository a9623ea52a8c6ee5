"""``t10k pcap decode`` (issue 11): its fast paths print exactly what the plain rules give,
and it reads a capture without scapy, cryptography or the daemons."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import protocol as p
from lab.cli import main
from protocol.describe import _describe, describe_iscsi
from protocol.pcap import CaptureWriter, read_capture
from tests.vectors import sample_messages

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted((ROOT / "captures").glob("*.pcap"))
SECRET = bytes(range(32))


def _plain_rows(path: Path, types: set[str] | None = None, secret: bytes | None = None) -> list[dict[str, object]]:
    """Every row as the command first printed it: one dict per frame, fields by the rules."""
    frames = read_capture(path)
    start = frames[0].time if frames else 0.0
    rows = []
    for f in frames:
        name = f.frame.message.TYPE.name if f.frame else "ISCSI" if f.iscsi is not None else "MALFORMED"
        if types and name not in types:
            continue
        row: dict[str, object] = {"t": round(f.time - start, 6), "transport": f.transport,
                                  "src": f"{f.src[0]}:{f.src[1]}", "dst": f"{f.dst[0]}:{f.dst[1]}", "message": name}
        if f.frame is not None:
            fields: dict[str, object]
            if not f.frame.authenticated:
                fields = _describe(f.frame.message)
            else:
                fields = {"body": f"sealed, {f.frame.message.sealed_octets} octets",  # type: ignore[union-attr]
                          "counter": f.frame.counter}
                if secret is not None:
                    try:
                        fields = _describe(f.frame.open(secret).message) | {"counter": f.frame.counter}
                    except (p.AuthenticationError, p.DecodeError):
                        pass
            row |= {"sequence": f.frame.sequence, "reply": f.frame.is_reply, "authenticated": f.frame.authenticated,
                    "fields": fields}
        elif f.iscsi is not None:
            row |= {"fields": describe_iscsi(f.iscsi)}
        else:
            row |= {"error": f.error, "raw": f.raw.hex()}
        rows.append(row)
    return rows


def _expected(rows: list[dict[str, object]]) -> str:
    return "[\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in rows) + "\n]\n"


def _decoded(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert main(["pcap", "decode", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every message type plain and sealed (under SECRET and under another secret), repeated
    bodies, odd times, and malformed frames."""
    path = tmp_path_factory.mktemp("mixed") / "mixed.pcap"
    times = iter(1_800_000_000 + i * 0.0000013 for i in range(10_000))
    with CaptureWriter(path, clock=lambda: next(times)) as cap:
        for i, (_, message) in enumerate(sorted(sample_messages().items())):
            for again in range(2):  # the same body twice, as a retry sends it
                cap.write("udp", ("127.0.0.9", 7011), ("127.0.0.21", 7012),
                          p.encode(message, sequence=i + again, reply=bool(i % 2)))
            for port, secret in ((40000, SECRET), (40001, bytes(32))):
                cap.write("tcp", ("127.0.0.1", port), ("127.0.0.21", 7020),
                          p.encode_authenticated(message, secret=secret, counter=100 + i, sequence=i))
        cap.write("udp", ("127.0.0.9", 7011), ("127.0.0.21", 7012), b"garbage\x00\xff")
        cap.write("udp", ("127.0.0.9", 7011), ("127.0.0.21", 7012), p.encode(message)[:-3])
        cap.write("tcp", ("127.0.0.5", 40002), ("127.0.0.21", 7020), b"\x00" * 40)
    return path


@pytest.mark.parametrize("path", CAPTURES, ids=lambda c: c.name)
def test_json_is_what_the_rules_give_for_every_reference_capture(path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert _decoded(capsys, str(path), "--json") == _expected(_plain_rows(path))


def test_json_of_every_message_plain_sealed_repeated_and_malformed(mixed: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    rows = _plain_rows(mixed)
    assert {"MALFORMED", "VOP_CHALLENGE", "WRITE_OKT"} <= {str(r["message"]) for r in rows}
    assert _decoded(capsys, str(mixed), "--json") == _expected(rows)
    (tmp_path / "secret").write_text(SECRET.hex() + "\n")
    opened = _decoded(capsys, str(mixed), "--json", "--secret-file", str(tmp_path / "secret"))
    assert opened == _expected(_plain_rows(mixed, secret=SECRET)) != _expected(rows)
    only = _decoded(capsys, str(mixed), "--json", "--type", "key_request", "--type", "malformed")
    assert only == _expected(_plain_rows(mixed, {"KEY_REQUEST", "MALFORMED"}))


@pytest.mark.parametrize("name", [c.name for c in CAPTURES] + ["mixed"])
def test_read_capture_decodes_every_frame_as_the_codec_does(name: str, mixed: Path) -> None:
    """Bodies seen before are not parsed again: what each frame holds is still codec.decode's."""
    frames = [f for f in read_capture(mixed if name == "mixed" else ROOT / "captures" / name) if f.iscsi is None]
    assert len({f.raw[16:] for f in frames}) < len(frames)  # repeated bodies are among them
    for f in frames:
        try:
            frame = p.decode(f.raw)
        except p.DecodeError as exc:
            assert (f.frame, f.error) == (None, str(exc))
            continue
        assert f.frame == frame and f.error is None and _describe(f.frame.message) == _describe(frame.message)


def test_decoding_a_capture_imports_neither_scapy_nor_cryptography_nor_a_daemon() -> None:
    code = ("import contextlib, io, sys\n"
            "from lab.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    assert main(['pcap', 'decode', {str(ROOT / 'captures' / 'demo.pcap')!r}, '--json']) == 0\n"
            "print(' '.join(sorted(sys.modules)))\n")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                                timeout=60).stdout.split())
    assert "protocol.pcap" in loaded and "protocol.fastcodec" in loaded
    unwanted = {"scapy", "cryptography", "asyncio", "drive_daemon.service", "token_daemon.service", "kms_client.store",
                "kms_console", "lab.captures"}
    assert loaded & unwanted == set()
