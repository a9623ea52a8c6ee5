"""What an operator does at the KMS: write tokens and read them back, over the network."""

from __future__ import annotations

from protocol import ClearError, MgmtResult, ReadStatus, TokenStatus, WriteEkt, WriteOkt

from .backup import backup_after
from .builders import build_ekt, build_okt
from .errors import ReplyNotAuthentic
from .push import request
from .store import KmsStore


def write_image(store: KmsStore, token: str, message: WriteEkt | WriteOkt, image: object) -> None:
    """Air gap: the exact authenticated frame the token would have received, to a file (0600),
    recorded and followed by a backup like any token write."""
    import os

    from protocol import encode_authenticated

    frame = encode_authenticated(message, secret=store.token_secret(token), counter=store.next_token_counter(token))
    fd = os.open(str(image), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(frame)
    kind = "EKT" if isinstance(message, WriteEkt) else "OKT"
    with store.transaction():
        store.audit(f"write_{kind.lower()}", {"token": token, "image": str(image)})
    backup_after(store, f"{kind} image written for {token}")


def read_status_image(store: KmsStore, token: str, image: object) -> TokenStatus:
    """Air gap, the way back: a token's saved status, checked against its secret."""
    from pathlib import Path

    from protocol import AuthenticationError, DecodeError, decode

    try:
        frame = decode(Path(str(image)).read_bytes())
        frame.verify(store.token_secret(token))
    except (OSError, DecodeError, AuthenticationError) as exc:
        raise ReplyNotAuthentic(f"{image} is not a status image of token {token}: {exc}") from None
    if not isinstance(frame.message, TokenStatus):
        raise ReplyNotAuthentic(f"{image} holds {type(frame.message).__name__}, not a token status")
    return frame.message


async def _send(store: KmsStore, token: str, message: object, timeout_s: float) -> object:
    record = store.token(token)
    return await request(
        record.ip, message, secret=store.token_secret(token), counter=store.next_token_counter(token),  # type: ignore[arg-type]
        port=record.port, timeout_s=timeout_s,
    )


async def write_ekt(store: KmsStore, token: str, drives: list[str], *, use_pckey: bool, timeout_s: float = 30.0) -> MgmtResult:
    """Generate new device keys for the drives and write them to the token (an EKT)."""
    result = _result(await _send(store, token, build_ekt(store, drives, use_pckey=use_pckey), timeout_s))
    with store.transaction():
        store.audit("write_ekt", {"token": token, "drives": drives, "use_pckey": use_pckey})
    backup_after(store, f"EKT written to {token}")  # the seed: a backup on every token write
    return result


async def write_okt(store: KmsStore, token: str, pool: str, *, timeout_s: float = 30.0) -> MgmtResult:
    """Write the pool's current mapping, with its timestamp, to the token (an OKT)."""
    okt = build_okt(store, pool)
    result = _result(await _send(store, token, okt, timeout_s))
    with store.transaction():
        store.audit("write_okt", {"token": token, "pool": pool, "okt_timestamp": okt.okt_timestamp})
    backup_after(store, f"OKT written to {token}")
    return result


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
