"""``t10k host`` against our own drive over iSCSI: encrypted backups, the seed's sense data, encryption status.

These need a drive serving its iSCSI target (S-A's portal with S-B's SSC device wired into
the drive host) and the operator's ``t10k tape load``: they pass once issue 9's branches
are merged, not on the scsi-host branch alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from drive_daemon.sockets import SocketMode
from tests.integration.conftest import BOTH_SOCKET_MODES
from tests.integration.test_processes import Daemon, armed_by_cli, daemons, t10k  # noqa: F401 (fixture)

pytestmark = pytest.mark.network


@BOTH_SOCKET_MODES
def test_backup_list_restore_verify_through_the_cli(tmp_path: Path, daemons: list[Daemon],  # noqa: F811
                                                    drive_sockets: SocketMode) -> None:
    site = armed_by_cli(tmp_path, daemons, drive_sockets.value)
    library = tmp_path / "library"
    t10k("tape", "new", "--library", str(library), "BK0001")
    ip = ["--ip", site.ips[0]]
    t10k("tape", "load", *ip, "BK0001")
    src = tmp_path / "src"
    src.mkdir()
    files = {"small.txt": b"hello tape\n", "big.bin": os.urandom(3 * 256 * 1024 + 12345), "empty": b""}
    for name, data in files.items():
        (src / name).write_bytes(data)
    backed = t10k("host", "backup", *ip, "--progress", *(str(src / n) for n in files))
    assert "MB/s" in backed.stderr  # the progress bar
    listed = json.loads(t10k("host", "list", *ip, "--json").stdout)
    assert [(f["name"], f["size"]) for f in listed] == [(n, len(d)) for n, d in files.items()]
    t10k("host", "restore", *ip, "--out", str(tmp_path / "out"), "--no-progress")
    assert {n: (tmp_path / "out" / n).read_bytes() for n in files} == files
    verified = json.loads(t10k("host", "verify", *ip, "--json", *(str(src / n) for n in files)).stdout)
    assert [v["ok"] for v in verified] == [True, True, True]
    (src / "small.txt").write_bytes(b"changed since the backup")
    bad = t10k("host", "verify", *ip, str(src / "small.txt"), check=False)
    assert bad.returncode == 1 and "BAD file 0: small.txt" in bad.stdout
    appended = json.loads(t10k("host", "backup", *ip, "--append", "--json", str(src / "small.txt")).stdout)
    assert appended[0]["file"] == 3
    status = json.loads(t10k("host", "status", *ip, "--json").stdout)
    assert status["loaded"] is True and status["vendor"].strip() == "STK"
    assert "encrypt" in str(status["encryption"]).lower()
    t10k("host", "unload", *ip)
    status = json.loads(t10k("host", "status", *ip, "--json").stdout)
    assert status["loaded"] is False
    tape = json.loads(t10k("tape", "list", "--library", str(library), "--json").stdout)
    assert tape[0]["key_ids"] == [site.key] and tape[0]["filemarks"] == 4 and tape[0]["encrypted_blocks"] > 0


def test_no_cartridge_is_one_line_not_ready(tmp_path: Path, daemons: list[Daemon]) -> None:  # noqa: F811
    site = armed_by_cli(tmp_path, daemons)
    listed = t10k("host", "list", "--ip", site.ips[1], check=False)
    assert listed.returncode == 1 and "not ready" in listed.stderr and "t10k tape load" in listed.stderr
    assert len(listed.stderr.strip().splitlines()) == 1


def test_the_missing_key_capture_over_iscsi(tmp_path: Path) -> None:
    """The scenario asserts the host saw 3/2605/6109 with the key ID; the capture has the token's side."""
    from lab.captures import capture_all
    from protocol.constants import MessageType
    from protocol.pcap import read_capture

    secrets = capture_all(tmp_path, ["missing-key"])["missing-key"]
    data = (tmp_path / "missing-key.pcap").read_bytes()
    assert len(secrets) >= 9 and [s.hex() for s in secrets if s in data] == []
    frames = [f.frame.message for f in read_capture(tmp_path / "missing-key.pcap") if f.frame]
    reports = [m for m in frames if m.TYPE is MessageType.ERROR_REPORT]
    assert reports and int(reports[0].error_code) == 0x6109 and any(reports[0].key_id)  # type: ignore[union-attr]
