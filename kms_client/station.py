"""What an operator does at the KMS: write tokens and read them back, over the network."""

from __future__ import annotations

from pathlib import Path

from protocol import ClearError, MgmtResult, ReadStatus, TokenStatus
from protocol.constants import MgmtStatus

from . import intents
from .backup import backup_after
from .builders import PreparedWrite, prepare_ekt, prepare_okt
from .errors import (
    CounterLost,
    ReplyLost,
    ReplyNotAuthentic,
    TokenRefused,
    TokenUnreachable,
    WriteUnsettled,
    WrongSecret,
)
from .files import write_key_file
from .push import request, request_resyncing, resync
from .store import KmsStore


def write_image(store: KmsStore, token: str, prepared: PreparedWrite, image: Path, *, force: bool = False) -> None:
    """Air gap: the exact sealed frame the token would have received, to a file (0600).
    The file is written first; then its device keys, counter and audit record land together
    (the KMS cannot see the token take it), and a backup follows like any token write."""
    from protocol import encode_authenticated

    counter = store.peek_token_counter(token)
    frame = encode_authenticated(prepared.message, secret=store.token_secret(token), counter=counter)
    write_key_file(image, frame, force=force, what="a token image")
    with store.transaction():
        store.apply_device_keys(prepared.changes)
        store.raise_token_counter(token, counter)
        store.audit(f"write_{prepared.kind.lower()}", prepared.detail | {"token": token, "image": str(image),
                                                                        "counter": counter})
    backup_after(store, f"{prepared.kind} image written for {token}")


def read_status_image(store: KmsStore, token: str, image: object) -> TokenStatus:
    """Air gap, the way back: a token's saved status, checked against its secret."""
    from protocol import AuthenticationError, DecodeError, decode

    try:
        frame = decode(Path(str(image)).read_bytes())  # the file's shape first: a damaged one says so
        frame = frame.open(store.token_secret(token))
    except (OSError, DecodeError, AuthenticationError) as exc:
        raise ReplyNotAuthentic(f"{image} is not a status image of token {token}: {exc}") from None
    if not isinstance(frame.message, TokenStatus):
        raise ReplyNotAuthentic(f"{image} holds {type(frame.message).__name__}, not a token status")
    return frame.message


async def _send(store: KmsStore, token: str, message: object, timeout_s: float) -> object:
    """A request that changes no keys (status, clear error), resynchronising a token that
    lost its replay counter (every counter is recorded before use: it never goes down)."""
    record = store.token(token)
    return await request_resyncing(
        record.ip, message, secret=store.token_secret(token), next_counter=lambda: store.next_token_counter(token),  # type: ignore[arg-type]
        port=record.port, timeout_s=timeout_s, on_resync=lambda floor: _audit_resync(store, token, floor),
    )


def _audit_resync(store: KmsStore, token: str, floor: int) -> None:
    with store.transaction():
        store.raise_token_counter(token, floor)
        store.audit("resync_token_counter", {"token": token, "counter": floor})


async def _resync(store: KmsStore, token: str, challenge: bytes, timeout_s: float) -> None:
    record = store.token(token)
    floor = store.next_token_counter(token)
    await resync(record.ip, challenge, secret=store.token_secret(token), counter=floor, port=record.port,
                 timeout_s=timeout_s)
    _audit_resync(store, token, floor)


async def write_ekt(store: KmsStore, token: str, drives: list[str], *, use_pckey: bool, timeout_s: float = 30.0) -> MgmtResult:
    """Generate new device keys for the drives and write them to the token (an EKT); the
    keys are stored only once the token has them."""
    await _settle_leftovers(store, timeout_s)
    return await push_write(store, token, prepare_ekt(store, drives, use_pckey=use_pckey), timeout_s)


async def write_okt(store: KmsStore, token: str, pool: str, *, timeout_s: float = 30.0) -> MgmtResult:
    """Write the pool's current mapping, with its timestamp, to the token (an OKT)."""
    await _settle_leftovers(store, timeout_s)
    return await push_write(store, token, prepare_okt(store, pool), timeout_s)


#: Writes this process is pushing right now, by (store, counter): another of its writes waits
#: for them instead of settling them from the token's status, which would fence them.
_PUSHING: set[tuple[str, int]] = set()


def _pushing(store: KmsStore, write: intents.PendingWrite) -> tuple[str, int]:
    return str(store.directory), write.counter


async def push_write(store: KmsStore, token: str, prepared: PreparedWrite, timeout_s: float, *,
                     resynced: bool = False) -> MgmtResult:
    """One token write, settled by the token's answer (kms_client/intents.py). A token that
    lost its replay counter took nothing: it is resynchronised and the write sent again,
    above the new floor."""
    counter = store.peek_token_counter(token)
    write = intents.record(store, token, prepared.kind, counter, prepared.changes, prepared.detail | {"token": token})
    _PUSHING.add(_pushing(store, write))
    try:
        return await _push(store, token, prepared, write, timeout_s, resynced)
    finally:
        _PUSHING.discard(_pushing(store, write))


async def _push(store: KmsStore, token: str, prepared: PreparedWrite, write: intents.PendingWrite, timeout_s: float,
                resynced: bool) -> MgmtResult:
    record = store.token(token)
    try:
        reply = await request(record.ip, prepared.message, secret=store.token_secret(token), counter=write.counter,
                              port=record.port, timeout_s=timeout_s)
        if not isinstance(reply, MgmtResult):
            raise ReplyLost(f"the token answered {type(reply).__name__} to a write")
    except CounterLost as lost:
        if resynced:
            intents.drop(store, write, str(lost))
            raise TokenRefused(f"{lost}, again right after a RESYNC (restarting?)") from None
        try:
            await _resync(store, token, lost.challenge, timeout_s)  # above this write's counter: never reused
        except TokenRefused:
            pass  # the challenge was spent by another KMS process's RESYNC: the write goes above its floor
        except Exception as exc:
            intents.drop(store, write, f"{lost}, and the RESYNC failed: {exc}")
            raise
        intents.withdraw(store, write)
        return await push_write(store, token, prepared, timeout_s, resynced=True)
    except ReplyLost as exc:
        settled = await settle(store, write, timeout_s=timeout_s)
        if settled is None:
            raise WriteUnsettled(f"{exc}; its status cannot be read either, so whether it took {write.describe()} is "
                                 f"unknown: the KMS keeps the write pending until 't10k kms reconcile' reads the "
                                 f"token's status") from None
        if not settled:
            raise TokenUnreachable(f"{exc}; the token's status shows it did not take the write: the KMS is "
                                   f"unchanged") from None
        return MgmtResult(MgmtStatus.OK, f"{prepared.kind} written: the answer was lost, but the token's status "
                                         f"shows it took this write")
    except (TokenUnreachable, TokenRefused, WrongSecret) as exc:
        intents.drop(store, write, str(exc))
        raise
    intents.commit(store, write, "the token answered OK")
    backup_after(store, f"{prepared.kind} written to {token}")  # the seed: a backup on every token write
    return reply


async def settle(store: KmsStore, write: intents.PendingWrite, *, timeout_s: float = 10.0) -> bool | None:
    """Whether the token took ``write``, from its status (True/False, recorded either way), or
    None when its status cannot be read now (the write stays pending)."""
    try:
        status = await token_status(store, write.token, timeout_s=timeout_s)
    except (TokenUnreachable, ReplyNotAuthentic, TokenRefused):
        return None
    if status.last_write_counter == write.counter:
        intents.commit(store, write, "the token's status (its last write carries this counter)")
        backup_after(store, f"{write.kind} written to {write.token} (settled from its status)")
        return True
    later = status.last_write_counter > write.counter
    intents.drop(store, write, f"the token's last write carries counter {status.last_write_counter}"
                 + (", a later write" if later else ": this write never reached it"))
    return False


async def reconcile(store: KmsStore, *, timeout_s: float = 10.0) -> list[tuple[intents.PendingWrite, bool | None]]:
    """Settle every write left pending (a lost answer, a KMS that stopped mid-write); a write
    another KMS process, or this one, is still pushing is left to it (None)."""
    return [(w, None if w.in_flight or _pushing(store, w) in _PUSHING else await settle(store, w, timeout_s=timeout_s))
            for w in intents.pending(store)]


async def _settle_leftovers(store: KmsStore, timeout_s: float) -> None:
    """A new write waits for the old ones: its keys would be wrapped under keys not yet settled.
    Those this process is pushing (writes to other tokens, in parallel) are awaited."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_pushing(store, w) in _PUSHING for w in intents.pending(store)):
        await asyncio.sleep(0.02)
    for write, took in await reconcile(store, timeout_s=timeout_s):
        if took is None and (write.in_flight or _pushing(store, write) in _PUSHING):
            raise WriteUnsettled(f"{write.describe()} is still being pushed by KMS process {write.pid}: "
                                 f"try again when it has finished")
        if took is None:
            raise WriteUnsettled(f"{write.describe()} is unsettled and the token's status cannot be read: "
                                 f"start that token, then 't10k kms reconcile'")


async def token_status(store: KmsStore, token: str, *, timeout_s: float = 10.0) -> TokenStatus:
    reply = await _send(store, token, ReadStatus(), timeout_s)
    if not isinstance(reply, TokenStatus):
        raise ReplyNotAuthentic(f"token {token} answered {type(reply).__name__} to a status request")
    return reply


async def clear_token_error(store: KmsStore, token: str, *, timeout_s: float = 10.0) -> MgmtResult:
    result = _result(await _send(store, token, ClearError(), timeout_s))
    with store.transaction():
        store.audit("clear_token_error", {"token": token})
    return result


def _result(reply: object) -> MgmtResult:
    if not isinstance(reply, MgmtResult):
        raise ReplyNotAuthentic(f"the token answered {type(reply).__name__} where a result was expected")
    return reply


async def verify_pool(store: KmsStore, pool: str) -> list[dict[str, object]]:
    """The seed's question for a pool of 100 drives: which drives do not hold the mapping's timestamp?
    Asks every drive's VOP; each row says whether the drive agrees, and why not."""
    import asyncio

    from protocol.timestamps import format_timestamp

    from .vop import ask_vop_status

    mapping = store.mapping(pool)
    drives = store.pool_drives(pool)
    ips = {d.name: store.drive_ip(d.name) for d in drives}
    answers = await asyncio.gather(*(ask_vop_status(ips[d.name]) if ips[d.name] else asyncio.sleep(0, "no IP known: "
                                     "t10k kms set-drive-ip") for d in drives))
    rows = []
    for d, answer in zip(drives, answers, strict=True):
        if isinstance(answer, str):
            rows.append({"drive": d.name, "ip": ips[d.name], "ok": False, "problem": answer})
            continue
        ok = answer.okt_timestamp == mapping.timestamp and answer.media_key_count > 0
        problem = "" if ok else ("holds no media keys (Need OKT)" if answer.need_okt else
                                 f"holds {format_timestamp(answer.okt_timestamp)}")
        rows.append({"drive": d.name, "ip": ips[d.name], "ok": ok, "led": answer.led.name,
                     "okt_time": format_timestamp(answer.okt_timestamp), "problem": problem})
    return rows
