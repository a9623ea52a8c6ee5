"""Air-gap mode: a token written at the KMS from an image file, carried to the bay, and back.

The image is the exact authenticated frame the KMS would have sent over the network
(WRITE_EKT, WRITE_OKT); loading it runs the same Token code, so the MAC and the replay
counter are checked just as on the wire. ``save_image`` writes the token's status as an
authenticated frame for the KMS to read back (errors, acknowledgements). A token whose
daemon runs (in a bay) is locked: stop it first.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from protocol import DecodeError, MgmtResult, decode, encode_authenticated
from protocol.constants import MgmtStatus

from .errors import ConfigError, TokenDaemonError
from .memory import MemoryStore
from .token import Token

LOCK_NAME = ".in-bay.lock"


def lock_state(state_dir: Path) -> IO[bytes]:
    """Held while a daemon serves the token: an image cannot be loaded meanwhile."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fh = open(state_dir / LOCK_NAME, "wb")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise ConfigError(f"the token in {state_dir} is in a bay (its daemon runs): stop it first") from None
    return fh


def load_image(state_dir: Path, secret: bytes, image: Path, now_us: int) -> MgmtResult:
    try:
        data = image.read_bytes()
        frame = decode(data)
    except OSError as exc:
        raise ConfigError(f"cannot read the image {image}: {exc.strerror}") from None
    except DecodeError as exc:
        raise ConfigError(f"{image} is not a token image: {exc}") from None
    lock = lock_state(state_dir)
    try:
        store = MemoryStore(state_dir)
        token = Token(store.load(), secret)
        out = token.receive_management(frame, now_us)
        assert out.reply is not None
        result = decode(out.reply).message
        assert isinstance(result, MgmtResult)
        if result.status is not MgmtStatus.OK:
            raise TokenDaemonError(f"the token refused {image.name}: {result.status.name}: {result.message}")
        store.save(token.memory)
        return result
    finally:
        lock.close()


def save_image(state_dir: Path, secret: bytes, image: Path, *, force: bool = False) -> None:
    store = MemoryStore(state_dir)
    token = Token(store.load(), secret)
    frame = encode_authenticated(token.status(), secret=secret, counter=token.memory.mgmt_counter, reply=True)
    if not force and os.path.lexists(image):
        raise TokenDaemonError(f"{image} exists: not overwriting a token image without --force")
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(frame)
