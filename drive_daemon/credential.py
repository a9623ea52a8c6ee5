"""The drive host's service credential and the VOP's Reset Drive check (protocol version 3).

A drive host is given one secret file (``--service-credential-file``); each drive's reset
key is HKDF(credential, CSN). Reset Drive is a two-step exchange on one VOP connection:
the VOP asks for a challenge, the drive hands out a fresh random one that is good on that
connection once, and the reset carries it with an HMAC under the reset key. Without the
credential nobody resets a drive from the VOP; a captured reset is refused anywhere else.
Status, load and unload stay open, as on the real panel.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from protocol import VopChallenge, VopResetDrive, reportauth
from protocol.constants import SERVICE_CREDENTIAL_SIZE, VOP_CHALLENGE_SIZE
from protocol.keyfile import read_hex_file

from .errors import DriveDaemonError


class CredentialError(DriveDaemonError):
    """The service credential file is missing, unreadable or not 64 hex digits."""


def read_credential_file(path: Path) -> bytes:
    try:
        return read_hex_file(path, SERVICE_CREDENTIAL_SIZE)
    except OSError as exc:
        raise CredentialError(f"cannot read the service credential file {path}: {exc}") from None
    except ValueError as why:
        raise CredentialError(f"{path} must hold a service credential as {2 * SERVICE_CREDENTIAL_SIZE} hex digits "
                              f"({why}; make one with 't10k drive make-credential --out {path}')") from None


def write_credential_file(path: Path, *, force: bool = False) -> bytes:
    """A new random credential in ``path`` (mode 0600); an existing file is kept unless ``force``."""
    if path.exists() and not force:
        raise CredentialError(f"{path} exists: a drive host using it would lose its credential (--force replaces it)")
    credential = os.urandom(SERVICE_CREDENTIAL_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(credential.hex() + "\n")
    os.replace(tmp, path)
    return credential


@dataclass
class ResetGate:
    """One VOP connection's view of Reset Drive, sans I/O: a challenge, then one reset."""

    csn: bytes
    #: The drive's reset key (None: its host was started without a service credential).
    reset_key: bytes | None
    random: Callable[[int], bytes] = os.urandom
    _challenge: bytes | None = field(default=None, init=False)

    def challenge(self) -> VopChallenge:
        """A fresh challenge for this connection; it replaces any earlier one."""
        self._challenge = self.random(VOP_CHALLENGE_SIZE)
        return VopChallenge(self.csn, self._challenge)

    def refusal(self, reset: VopResetDrive) -> str | None:
        """Why this reset is refused (None: it may proceed). A challenge serves one reset."""
        expected, self._challenge = self._challenge, None
        if self.reset_key is None:
            return ("this drive host has no service credential (start it with --service-credential-file): "
                    "VOP Reset Drive is refused")
        if expected is None:
            return "no challenge was asked for on this connection: a reset must answer its own connection's challenge"
        if reset.challenge != expected:
            return "the reset answers another challenge than this connection's: a replayed reset is refused"
        if not reportauth.verify_vop_reset_mac(self.reset_key, self.csn, expected, reset.mac):
            return "the reset's MAC does not verify: not this drive host's service credential"
        return None


def reset_request(credential: bytes, challenge: VopChallenge) -> VopResetDrive:
    """What the VOP sends to answer ``challenge`` with the drive host's credential."""
    key = reportauth.vop_reset_key(credential, challenge.csn)
    return VopResetDrive(challenge.challenge, reportauth.vop_reset_mac(key, challenge.csn, challenge.challenge))
