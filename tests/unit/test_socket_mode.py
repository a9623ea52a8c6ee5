"""Which sockets a drive host uses (drive_daemon/sockets.py): decided without opening any."""

from __future__ import annotations

from drive_daemon.sockets import SocketMode, choose_mode


def test_auto_is_per_drive_while_three_descriptors_a_drive_fit_in_half_the_limit() -> None:
    assert choose_mode(SocketMode.AUTO, 3333, soft_limit=20_000)[0] is SocketMode.PER_DRIVE
    mode, why = choose_mode(SocketMode.AUTO, 3334, soft_limit=20_000)
    assert mode is SocketMode.SHARED and "20000" in why
    assert choose_mode(SocketMode.AUTO, 10_000, soft_limit=1024)[0] is SocketMode.SHARED
    assert choose_mode(SocketMode.PER_DRIVE, 10_000, soft_limit=1024)[0] is SocketMode.PER_DRIVE
    assert choose_mode(SocketMode.SHARED, 1, soft_limit=1024)[0] is SocketMode.SHARED
