"""Open a drive's tape LUN over iSCSI: the one place the host's tools log in."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import AsyncIterator

from protocol.constants import ISCSI_PORT
from protocol.iscsi.errors import ProtocolError

from .errors import TransportError
from .iscsi_client import IscsiClient, IscsiClientError
from .tape import TapeDrive


@asynccontextmanager
async def open_tape(host: str, *, port: int = ISCSI_PORT, target: str | None = None, lun: int = 0,
                    chap: tuple[str, str] | None = None, timeout: float = 60.0) -> AsyncIterator[TapeDrive]:
    """Log in to ``host:port`` (discovering the target when none is named) and yield its tape."""
    client = IscsiClient(host, port, target=target, chap=chap, timeout=timeout, lun=lun)
    try:
        await client.__aenter__()
    except (IscsiClientError, ProtocolError, OSError) as exc:
        raise TransportError(f"cannot log in to the iSCSI target at {host}:{port}"
                             f"{' (' + target + ')' if target else ''}: {exc}; is a drive serving there?") from None
    try:
        yield TapeDrive(client)
    finally:
        await client.__aexit__(None, None, None)
