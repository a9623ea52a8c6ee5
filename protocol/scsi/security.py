"""SECURITY PROTOCOL IN pages: protocol 00h (security protocol information, SPC-4) and
20h (tape data encryption, SSC-3 8.5). In this system keys come from the token, so the
device reports its encryption state here and accepts no SECURITY PROTOCOL OUT page.
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import (
    GreedyBytes,
    GreedyRange,
    Int8ub,
    Int16ub,
    Int32ub,
    Int64ub,
    Padding,
    Prefixed,
    PrefixedArray,
    Struct,
)

from ..constants import KEY_ID_SIZE
from ._record import ScsiFormatError

# protocol 00h pages
SP_SUPPORTED_PROTOCOLS = 0x0000
SP_CERTIFICATE = 0x0001
SUPPORTED_PROTOCOLS = Struct(Padding(6), "protocols" / PrefixedArray(Int16ub, Int8ub))
CERTIFICATE = Struct(Padding(2), "certificate" / Prefixed(Int16ub, GreedyBytes))

# protocol 20h pages
TDE_SUPPORTED_PAGES = 0x0000
TDE_SUPPORTED_OUT_PAGES = 0x0001
TDE_CAPABILITIES = 0x0010
TDE_SUPPORTED_KEY_FORMATS = 0x0011
TDE_DATA_ENCRYPTION_STATUS = 0x0020
TDE_NEXT_BLOCK_ENCRYPTION_STATUS = 0x0021
TDE_SET_DATA_ENCRYPTION = 0x0010  # the SECURITY PROTOCOL OUT page a host would send to set a key
TDE_IN_PAGES = (TDE_SUPPORTED_PAGES, TDE_SUPPORTED_OUT_PAGES, TDE_CAPABILITIES, TDE_SUPPORTED_KEY_FORMATS,
                TDE_DATA_ENCRYPTION_STATUS, TDE_NEXT_BLOCK_ENCRYPTION_STATUS)

TDE_PAGE = Struct("page_code" / Int16ub, "body" / Prefixed(Int16ub, GreedyBytes))

#: Key-associated data descriptor; we carry the 8-octet key ID as U-KAD (type 00h).
KAD = Struct("type" / Int8ub, "authenticated" / Int8ub, "value" / Prefixed(Int16ub, GreedyBytes))
KAD_UKAD = 0x00
KAD_NOT_AUTHENTICATED = 0x01

#: Data encryption algorithm descriptor of the capabilities page (24 octets).
ALGORITHM_DESCRIPTOR = Struct(
    "algorithm_index" / Int8ub, Padding(1),
    "descriptor" / Prefixed(Int16ub, Struct(
        "flags4" / Int8ub,  # AVFMV SDK_C MAC_C DELB_C DECRYPT_C(2) ENCRYPT_C(2)
        "flags5" / Int8ub,  # AVFCLP(2) NONCE_C(2) KADF_C VCELB_C UKADF AKADF
        "max_ukad" / Int16ub, "max_akad" / Int16ub, "key_size" / Int16ub,
        "flags12" / Int8ub,  # DKAD_C(2) EEMC_C(2) RDMC_C(3) EAREM
        Padding(7), "algorithm" / Int32ub,
    )),
)
CAPABILITIES = Struct("flags4" / Int8ub, Padding(15), "algorithms" / GreedyRange(ALGORITHM_DESCRIPTOR))
#: Capabilities page octet 4, CFG_P = 10b: configuration by SECURITY PROTOCOL OUT prevented
#: (encryption is managed outside the host's reach: by the KMS and its tokens).
CFG_P_PREVENTED = 0x02
AVFMV = 0x80
ENCRYPT_C_HARDWARE = 0x02
DECRYPT_C_HARDWARE = 0x08

DATA_ENCRYPTION_STATUS = Struct(
    "scope" / Int8ub, "encryption_mode" / Int8ub, "decryption_mode" / Int8ub, "algorithm_index" / Int8ub,
    "key_instance_counter" / Int32ub, "flags12" / Int8ub, Padding(11), "kads" / GreedyRange(KAD),
)
NEXT_BLOCK_ENCRYPTION_STATUS = Struct(
    "logical_object_number" / Int64ub, "status" / Int8ub, "algorithm_index" / Int8ub, "flags" / Int8ub, Padding(1),
    "kads" / GreedyRange(KAD),
)
DECRYPTION_MODE_DISABLE, DECRYPTION_MODE_RAW, DECRYPTION_MODE_DECRYPT, DECRYPTION_MODE_MIXED = 0, 1, 2, 3


def tde_page(page_code: int, body: bytes) -> bytes:
    return TDE_PAGE.build(dict(page_code=page_code, body=body))


def parse_tde_page(data: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    raw = bytes(data)
    if len(raw) < 4 or len(raw) < 4 + int.from_bytes(raw[2:4], "big"):
        raise ScsiFormatError(f"truncated tape data encryption page: {raw[:8].hex()}")
    c = TDE_PAGE.parse(raw)
    return c.page_code, c.body


def page_list(pages: tuple[int, ...] | list[int]) -> bytes:
    return b"".join(p.to_bytes(2, "big") for p in pages)


def _kads(key_id: bytes | None) -> list[dict[str, object]]:
    return [] if key_id is None else [dict(type=KAD_UKAD, authenticated=KAD_NOT_AUTHENTICATED, value=key_id)]


def _key_id(kads: list) -> bytes | None:  # type: ignore[type-arg]
    return next((bytes(k.value) for k in kads if k.type == KAD_UKAD and len(k.value) == KEY_ID_SIZE), None)


@dataclass(frozen=True)
class DataEncryptionStatus:
    """Page 0020h. ``key_id``: the write key's ID, as U-KAD, when the drive encrypts."""

    encryption_mode: int
    decryption_mode: int
    algorithm_index: int = 1
    key_instance_counter: int = 0
    key_id: bytes | None = None

    def build(self) -> bytes:
        return tde_page(TDE_DATA_ENCRYPTION_STATUS, DATA_ENCRYPTION_STATUS.build(dict(
            scope=0, encryption_mode=self.encryption_mode, decryption_mode=self.decryption_mode,
            algorithm_index=self.algorithm_index, key_instance_counter=self.key_instance_counter, flags12=0,
            kads=_kads(self.key_id))))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> DataEncryptionStatus:
        code, body = parse_tde_page(data)
        if code != TDE_DATA_ENCRYPTION_STATUS:
            raise ScsiFormatError(f"page {code:04x}h is not Data Encryption Status")
        c = DATA_ENCRYPTION_STATUS.parse(body)
        return cls(c.encryption_mode, c.decryption_mode, c.algorithm_index, c.key_instance_counter, _key_id(c.kads))


@dataclass(frozen=True)
class NextBlockEncryptionStatus:
    """Page 0021h. ``encryption_status``: a :class:`~protocol.constants.NextBlockStatus`;
    ``key_id``: the key the next block was written with (U-KAD), if it is encrypted."""

    logical_object_number: int
    encryption_status: int
    algorithm_index: int = 0
    key_id: bytes | None = None

    def build(self) -> bytes:
        return tde_page(TDE_NEXT_BLOCK_ENCRYPTION_STATUS, NEXT_BLOCK_ENCRYPTION_STATUS.build(dict(
            logical_object_number=self.logical_object_number, status=self.encryption_status & 0x0F,
            algorithm_index=self.algorithm_index, flags=0, kads=_kads(self.key_id))))

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview) -> NextBlockEncryptionStatus:
        code, body = parse_tde_page(data)
        if code != TDE_NEXT_BLOCK_ENCRYPTION_STATUS:
            raise ScsiFormatError(f"page {code:04x}h is not Next Block Encryption Status")
        c = NEXT_BLOCK_ENCRYPTION_STATUS.parse(body)
        return cls(c.logical_object_number, c.status & 0x0F, c.algorithm_index, _key_id(c.kads))


def capabilities(encrypting: bool, loaded: bool, algorithm: int) -> bytes:
    """Page 0010h: one algorithm (AES-256-GCM) for an encrypting drive, none otherwise."""
    algorithms = []
    if encrypting:
        algorithms.append(dict(algorithm_index=1, descriptor=dict(
            flags4=(AVFMV if loaded else 0) | DECRYPT_C_HARDWARE | ENCRYPT_C_HARDWARE, flags5=0,
            max_ukad=KEY_ID_SIZE, max_akad=0, key_size=32, flags12=0, algorithm=algorithm)))
    return tde_page(TDE_CAPABILITIES, CAPABILITIES.build(dict(flags4=CFG_P_PREVENTED, algorithms=algorithms)))


def supported_protocols(protocols: list[int]) -> bytes:
    return SUPPORTED_PROTOCOLS.build(dict(protocols=protocols))


def certificate(der: bytes = b"") -> bytes:
    return CERTIFICATE.build(dict(certificate=der))

