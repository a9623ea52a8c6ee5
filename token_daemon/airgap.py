"""Air-gap mode: a token written at the KMS from an image file, carried to the bay, and back.

The image is the exact sealed frame the KMS would have sent over the network (WRITE_EKT,
WRITE_OKT: AES-256-GCM under the token secret, so it shows no clear authorisation or
package); loading it runs the same Token code, so it is decrypted and its replay counter
checked just as on the wire. A token without a counter (blank, or its state directory moved
aside) takes the image's counter as its floor: loading needs the token secret and hands on
the token, so it stands for the RESYNC the network needs. ``save_image`` writes the token's
status as a sealed frame for the KMS to read back (errors, acknowledgements). A token whose
daemon runs (in a bay) is locked: stop it first.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from protocol import DecodeError, MgmtResult, decode, encode_authenticated, open_frame
from protocol.constants import MgmtStatus

from .errors import ConfigError, TokenDaemonError
from .memory import MemoryStore
from .token import Token

LOCK_NAME = ".in-bay.lock"


def lock_state(state_dir: Path) -> IO[bytes]:
    """Held while a daemon serves the token: an image cannot be loaded meanwhile."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fh = os.fdopen(os.open(state_dir / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600), "wb")
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
        store = MemoryStore(state_dir, secret)
        store.prepare()
        token = Token(store.load(), secret)
        out = token.receive_management(frame, now_us, local=True)
        assert out.reply is not None
        result = open_frame(out.reply, secret).message
        assert isinstance(result, MgmtResult)
        if result.status is not MgmtStatus.OK:
            raise TokenDaemonError(f"the token refused {image.name}: {result.status.name}: {result.message}")
        store.save(token.memory)
        return result
    finally:
        lock.close()


def save_image(state_dir: Path, secret: bytes, image: Path, *, force: bool = False) -> None:
    store = MemoryStore(state_dir, secret)
    token = Token(store.load(), secret)
    frame = encode_authenticated(token.status(), secret=secret, counter=token.memory.mgmt_counter, reply=True)
    if not force and os.path.lexists(image):
        raise TokenDaemonError(f"{image} exists: not overwriting a token image without --force")
    fd = os.open(image, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL), 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(frame)
