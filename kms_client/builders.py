"""Build what the KMS writes to a token: EKT and OKT payloads.

Each drive's package is built once here, so a token can serve 10,000 pulls
without wrapping anything. Clear authorisations are made under the drive's
newest device keys, so a reset works even when the KMS and the drive are out
of sync by an undelivered EKT (seed, Scenario 1).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from netcheck.heap import collector_paused
from protocol import (
    ClearAuthorization,
    DeviceKeyPackage,
    EktEntry,
    MediaKeyPackage,
    OktEntry,
    WriteEkt,
    WriteOkt,
    envelope,
    reportauth,
)
from protocol.constants import MAX_CLEAR_AUTHORIZATIONS, RECEIPT_SIZE, TokenMode, Wrapping
from protocol.ids import ZERO_KEY_ID

from . import rules
from .errors import RuleViolation
from .store import DeviceKeyChanges, KmsStore, Mapping

#: Device keys per drive that a clear authorisation is made for (newest first).
CLEAR_HISTORY = MAX_CLEAR_AUTHORIZATIONS  # the token refuses writes sized for more


def _clear_authorizations(store: KmsStore, drive: str, csn: bytes,
                          newer: tuple[tuple[bytes, bytes], ...] = ()) -> tuple[ClearAuthorization, ...]:
    return _authorizations(csn, list(newer) + store.device_keys(drive, CLEAR_HISTORY - len(newer)))


def _authorizations(csn: bytes, keys: list[tuple[bytes, bytes]]) -> tuple[ClearAuthorization, ...]:
    return tuple(ClearAuthorization(csn, key_id, envelope.clear_mac(key, csn, key_id)) for key_id, key in keys)


@dataclass(frozen=True)
class PreparedWrite:
    """A token write and what the store gains once the token confirms it; nothing stored yet."""

    kind: str  # "EKT" or "OKT"
    message: WriteEkt | WriteOkt
    changes: DeviceKeyChanges
    detail: dict[str, Any]  # for the audit record


def prepare_ekt(store: KmsStore, drive_names: list[str], *, use_pckey: bool) -> PreparedWrite:
    """New device keys for the drives, wrapped under their PCkey or current device key; the
    keys reach the store only when the token confirms (kms_client/intents.py)."""
    with collector_paused():
        return _prepare_ekt(store, drive_names, use_pckey=use_pckey)


def _prepare_ekt(store: KmsStore, drive_names: list[str], *, use_pckey: bool) -> PreparedWrite:
    drives = [store.drive(n) for n in drive_names]
    if not use_pckey:
        missing = [d.name for d in drives if not d.enabled]
        if missing:
            raise RuleViolation(
                "first device keys are wrapped under the PCkey", f"drive(s) {', '.join(missing)} have no device keys yet",
                "Write the EKT with 'use PCkey' (--use-pckey) to enrol them.",
            )
    new_keys, changes = store.plan_device_keys(drive_names, via_pckey=use_pckey)
    timestamp = changes.timestamp
    signing_key = store.kms_signing_key()
    kms_public_key = envelope.public_key_of(signing_key)
    entries = []
    for d, row in zip(drives, changes.device_keys, strict=True):
        new_id, new_key = row.key_id, new_keys[row.key_id]
        pckey = store.pckey(d.name)
        if use_pckey:
            wrapping, wrapping_id, secret = Wrapping.PCKEY, ZERO_KEY_ID, pckey
        else:
            (wrapping_id, secret), = store.device_keys(d.name, 1)
            wrapping = Wrapping.DEVICE_KEY
        receipt = os.urandom(RECEIPT_SIZE)
        nonce, wrapped = envelope.wrap_device_key(secret, d.csn, timestamp, new_id, new_key, receipt, kms_public_key)
        package = DeviceKeyPackage(d.csn, timestamp, new_id, wrapping, wrapping_id, nonce, wrapped)
        # Authorisations under the new key and the two before it: the token can reset the
        # drive whether or not this package (or an earlier one) was ever delivered.
        auths = _clear_authorizations(store, d.name, d.csn, ((new_id, new_key),))
        report_key = reportauth.report_key(pckey, d.csn, timestamp)
        entries.append(EktEntry(package, envelope.receipt_hash(receipt), report_key, auths))
    detail = {"drives": drive_names, "use_pckey": use_pckey, "timestamp": timestamp,
              "device_key_ids": [k.key_id.hex() for k in changes.device_keys]}
    announcement = envelope.sign_announcement(signing_key, TokenMode.EKT, timestamp, [d.csn for d in drives])
    return PreparedWrite("EKT", WriteEkt(timestamp, tuple(entries), announcement), changes, detail)


def build_ekt(store: KmsStore, drive_names: list[str], *, use_pckey: bool) -> WriteEkt:
    """An EKT whose device keys are stored at once: for an image, or a lab that writes the
    token itself. Over the network, the station stores them only on the token's OK."""
    prepared = prepare_ekt(store, drive_names, use_pckey=use_pckey)
    with store.transaction():
        store.apply_device_keys(prepared.changes)
    return prepared.message  # type: ignore[return-value]


def prepare_okt(store: KmsStore, pool: str) -> PreparedWrite:
    okt = build_okt(store, pool)
    return PreparedWrite("OKT", okt, DeviceKeyChanges(), {"pool": pool, "okt_timestamp": okt.okt_timestamp})


def build_okt(store: KmsStore, pool: str) -> WriteOkt:
    """The pool's mapping, for each drive of the pool wrapped under its newest device key."""
    with collector_paused():
        return _build_okt(store, pool)


def _build_okt(store: KmsStore, pool: str) -> WriteOkt:
    mapping: Mapping = store.mapping(pool)
    rules.check_active(list(mapping.key_ids), store.inactive_keys())
    # Each drive's PCkey and newest device keys, for the whole pool in one query.
    drives = store.pool_okt_drives(pool, CLEAR_HISTORY)
    if not drives:
        raise RuleViolation("an OKT serves the drives of a pool", f"pool {pool!r} has no drives",
                            "Add enabled drives to the pool first.")
    media = {key_id: store.key_value(key_id) for key_id in mapping.key_ids}
    entries = []
    for d in drives:
        history = d.device_keys
        if not history:
            raise RuleViolation("a drive must be enabled before it gets media keys (limitation 5)",
                                f"drive {d.name!r} has no device keys", "Write an EKT for it first.")
        device_key_id, wrap_key, _ = history[0]
        wrapper = envelope.MediaKeyWrapper.from_wrap_key(wrap_key)
        receipt = os.urandom(RECEIPT_SIZE)
        # The receipt is bound to the whole header: a changed write key or key list fails to decrypt.
        header = envelope.media_package_header(d.csn, mapping.timestamp, device_key_id, mapping.write_key_id, media)
        package = MediaKeyPackage(
            csn=d.csn,
            okt_timestamp=mapping.timestamp,
            device_key_id=device_key_id,
            write_key_id=mapping.write_key_id,
            receipt=wrapper.wrap_receipt(header, receipt),
            media_keys=tuple(wrapper.wrap_key(d.csn, mapping.timestamp, k, v) for k, v in media.items()),
        )
        report_key = reportauth.report_key(d.pckey, d.csn, mapping.timestamp)
        auths = tuple(ClearAuthorization(d.csn, key_id, mac) for key_id, _, mac in history)
        entries.append(OktEntry(package, envelope.receipt_hash(receipt), report_key, auths))
    announcement = envelope.sign_announcement(store.kms_signing_key(), TokenMode.OKT, mapping.timestamp,
                                              [d.csn for d in drives])
    return WriteOkt(pool, mapping.timestamp, tuple(entries), announcement)
