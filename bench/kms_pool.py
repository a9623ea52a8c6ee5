"""What the pool benches ask of the KMS before an OKT: one key, one key set, one pool of every drive."""

from __future__ import annotations

from kms_client.store import KmsStore

POOL = "P"


def map_pool(kms: KmsStore, drive_names: list[str]) -> str:
    """A new key in a key set mapped to a pool of these (enrolled) drives; returns the pool's name."""
    key = kms.create_key()
    kms.create_key_set("KS")
    kms.add_key_to_set("KS", key)
    kms.create_pool(POOL)
    with kms.transaction():
        for name in drive_names:
            kms.add_drive_to_pool(POOL, name)
    kms.set_mapping(POOL, ["KS"], key)
    return POOL
