"""Every number of the wire protocol, in one place.

Ports, the frame header, message types, status and error codes and limits live
here so that daemons, tools and tests never spell a number twice.
"""

from __future__ import annotations

import enum

#: Frame header magic and the only protocol version this build speaks.
MAGIC = b"T10K"
PROTOCOL_VERSION = 3
#: Versions this build refuses, and why (the decode error says so, so a person knows what to upgrade).
RETIRED_VERSIONS = {
    1: "version 1 had the home-made host interface on TCP 7040 (LOAD..ENCRYPTION_STATUS); "
       "hosts now speak SCSI over iSCSI (TCP 3260): upgrade the peer to this build",
    2: "version 2 sent KMS-to-token writes in clear and let anyone on the drive LAN forge announcements, "
       "no-package answers and error reports (docs/SECURITY.md): upgrade the peer to this build",
}
HEADER_SIZE = 16

#: UDP port every drive listens on for LAN broadcasts (KEYS_AVAILABLE, CLEAR_KEYS).
DRIVE_LAN_PORT = 7010
#: UDP port a token answers KEY_REQUEST, KEY_ACK and ERROR_REPORT on, at its static IP.
TOKEN_LAN_PORT = 7011
#: UDP port a drive sends its requests from and receives replies on, at its static IP.
DRIVE_PORT = 7012
#: TCP port of the KMS-to-token management channel, at the token's static IP.
TOKEN_MGMT_PORT = 7020
#: TCP port of a drive's Virtual Operator Panel, at the drive's static IP.
VOP_PORT = 7030
#: Largest logical block a drive accepts (the T10000's 2 MiB).
MAX_BLOCK_SIZE = 2 * 1024 * 1024
#: Tape blocks (protocol/blocks.py): each write session's random salt, and the most blocks one
#: block key (HKDF of the media key, volume serial and salt) seals: its nonces are a counter below
#: this, so none repeats. Far above a tape's capacity (8.5 TB in 2 MiB blocks is ~4 million).
BLOCK_SALT_SIZE = 16
MAX_BLOCKS_PER_BLOCK_KEY = 2**32


class BlockScheme(enum.IntEnum):
    """How an encrypted tape block was sealed: the cartridge record header says which."""

    #: Before protocol version 3: a random nonce under the media key itself (read, never written).
    RANDOM_NONCE = 0
    #: A per-session block key and a counter nonce; the payload starts with salt and nonce.
    SESSION_KEY = 1

#: Loopback "LAN broadcast": Linux delivers it to every socket bound to the port
#: on 0.0.0.0 or on this address.
LOOPBACK_BROADCAST = "127.255.255.255"

#: A KEYS_AVAILABLE or CLEAR_KEYS datagram must never be fragmented.
MAX_BROADCAST_DATAGRAM = 1200
#: Largest body accepted on any channel (an OKT for 10,000 drives is ~23 MB).
MAX_BODY_LENGTH = 64 * 1024 * 1024
#: Largest datagram a daemon reads (a 32-key MEDIA_KEY_PACKAGE is ~2.3 KB).
MAX_DATAGRAM = 65_507
#: The largest pool the design allows: a WRITE_EKT/WRITE_OKT larger than one carrying a
#: package for this many drives (protocol/layouts.MANAGEMENT_BODY_CAPS) is refused from its header.
MAX_POOL_DRIVES = 10_000
#: Clear authorisations per drive in a WRITE_EKT/WRITE_OKT entry (the drive's newest device keys).
MAX_CLEAR_AUTHORIZATIONS = 3

#: A drive holds one write/read key and up to 31 read keys.
MAX_MEDIA_KEYS = 32
MEDIA_KEY_SIZE = 32
DEVICE_KEY_SIZE = 32
PCKEY_SIZE = 32
TOKEN_SECRET_SIZE = 32
KEY_ID_SIZE = 8
CSN_SIZE = 8
KMS_ID_SIZE = 4
NONCE_SIZE = 12
TAG_SIZE = 16
RECEIPT_SIZE = 16
#: A token's RESYNC challenge (MGMT_CHALLENGE, RESYNC).
CHALLENGE_SIZE = 16
CLEAR_MAC_SIZE = 16
MGMT_MAC_SIZE = 32
#: The KMS's Ed25519 announcement key: its public half reaches each drive inside its
#: device-key package; its signatures make KEYS_AVAILABLE authentic end to end.
KMS_PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64
#: An ERROR_REPORT's HMAC under its write's report key (truncated HMAC-SHA256).
REPORT_MAC_SIZE = 16
#: Report key of each EKT/OKT entry: HKDF of the drive's PCkey, its CSN and the write's timestamp.
REPORT_KEY_SIZE = 32
#: A drive host's service credential (the secret behind VOP Reset Drive) and what a VOP
#: reset carries: the connection's fresh challenge and an HMAC over it.
SERVICE_CREDENTIAL_SIZE = 32
VOP_CHALLENGE_SIZE = 16
VOP_MAC_SIZE = 16

#: Wrapped media key: AES-256-GCM ciphertext of a 32-byte key plus its tag.
WRAPPED_KEY_SIZE = MEDIA_KEY_SIZE + TAG_SIZE
#: Wrapped device-key package: device key, delivery receipt and the KMS public key, plus the tag.
WRAPPED_DEVICE_KEY_SIZE = DEVICE_KEY_SIZE + RECEIPT_SIZE + KMS_PUBLIC_KEY_SIZE + TAG_SIZE
WRAPPED_RECEIPT_SIZE = RECEIPT_SIZE + TAG_SIZE


class MessageType(enum.IntEnum):
    """Every message of the catalogue; the value is the header's type octet."""

    # Drive LAN (UDP)
    KEYS_AVAILABLE = 0x01
    KEY_REQUEST = 0x02
    DEVICE_KEY_PACKAGE = 0x03
    MEDIA_KEY_PACKAGE = 0x04
    NO_PACKAGE = 0x05
    KEY_ACK = 0x06
    ERROR_REPORT = 0x07
    CLEAR_KEYS = 0x08
    # KMS to token management (TCP, authenticated)
    WRITE_EKT = 0x20
    WRITE_OKT = 0x21
    READ_STATUS = 0x22
    CLEAR_ERROR = 0x23
    #: Sets the replay counter of a token that lost it (body: the token's current challenge).
    RESYNC = 0x24
    MGMT_RESULT = 0x30
    TOKEN_STATUS = 0x31
    #: A token without a replay counter answers every request but RESYNC with a fresh challenge.
    MGMT_CHALLENGE = 0x32
    # Virtual Operator Panel (TCP)
    VOP_STATUS_REQUEST = 0x40
    VOP_STATUS = 0x41
    VOP_RESET_DRIVE = 0x42
    VOP_RESULT = 0x43
    VOP_LOAD = 0x44
    VOP_UNLOAD = 0x45
    VOP_CHALLENGE_REQUEST = 0x46
    VOP_CHALLENGE = 0x47


class HeaderFlag(enum.IntFlag):
    NONE = 0
    #: A sealed management frame: the body is AES-256-GCM ciphertext and tag, followed by a
    #: trailer of the replay counter (u64) and the nonce (12 octets).
    AUTHENTICATED = 0x0001
    #: The message answers a request; its sequence echoes the request's.
    REPLY = 0x0002


class TokenMode(enum.IntEnum):
    EMPTY = 0
    EKT = 1  # Enabling Key Token: device keys for drives
    OKT = 2  # Operational Key Token: media keys for a drive pool


class KeyKind(enum.IntEnum):
    DEVICE = 1
    MEDIA = 2


class Wrapping(enum.IntEnum):
    """Which key protects a device-key package."""

    PCKEY = 1  # first enrolment, or "Use PCkey" after a reset
    DEVICE_KEY = 2  # the drive's current device key


class ErrorCode(enum.IntEnum):
    """Error codes a drive reports to its token (shown by the KMS as 8 hex digits)."""

    #: From the seed: a tape needs a media key the drive does not hold.
    MISSING_KEY = 0x00006109
    #: Ours (the seed names the error but not its code): the drive could not
    #: decrypt a key message, so it and the KMS hold different device keys.
    KEY_MESSAGE_DECRYPTION = 0x0000610A


class NoPackageReason(enum.IntEnum):
    NOT_HELD = 1  # the token holds nothing for that CSN
    DELIVERED = 2  # an EKT already delivered it and erased it
    WRONG_KIND = 3  # asked an EKT for media keys or an OKT for device keys


class MgmtStatus(enum.IntEnum):
    OK = 0
    BAD_REQUEST = 1
    AUTH_FAILED = 2
    REPLAYED = 3
    REFUSED = 4
    INTERNAL = 5


class VopStatusCode(enum.IntEnum):
    OK = 0
    REFUSED = 1
    BAD_REQUEST = 2


class SpaceUnit(enum.IntEnum):
    BLOCKS = 0
    FILEMARKS = 1


class NextBlockStatus(enum.IntEnum):
    """Encryption status of the next logical object (values of SSC's Next Block Encryption Status page)."""

    UNKNOWN = 0x1  # end of data, or nothing to tell
    NOT_A_BLOCK = 0x2  # a filemark
    NOT_ENCRYPTED = 0x3
    ENCRYPTED = 0x5  # and the drive holds the key
    ENCRYPTED_KEY_MISSING = 0x6


class EncryptionMode(enum.IntEnum):
    """Data Encryption Status page: what the drive does with the next write."""

    OFF = 0  # a non-encrypting drive, or plain tape
    ENCRYPT = 2  # encrypts with the mapping's write key


class EncryptionLed(enum.IntEnum):
    """The drive's encryption LED, as the seed describes it."""

    GREEN = 1  # not enabled: no device keys
    FLASHING_GREEN = 2  # just reset: keys cleared
    AMBER = 3  # device keys, no media keys (or holding keys while idle)
    RED = 4  # fully armed: device and media keys
    FLASHING_RED = 5  # holding keys while doing I/O


class TokenLed(enum.IntEnum):
    """Token LED 3 (fourth from left) and the error LED."""

    OFF = 0
    FLASHING_GREEN = 1  # an EKT with keys or CSNs
    SOLID_GREEN = 2  # an OKT
    FLASHING_RED = 3  # error LED: an error is held


#: Per-drive broadcast spread: a drive waits a random delay in
#: [0, min(MAX_PULL_SPREAD_S, PULL_SPREAD_BASE_S + n * PULL_SPREAD_PER_CSN_S)) for an offer to
#: n CSNs (n at most MAX_POOL_DRIVES, whatever an offer claims). PULL_SPREAD_PER_CSN_S is about twice what one token takes to answer one pull
#: (bench/token_serve.py: ~45,000 answers/s, 22 us, on the 2-vCPU lab machine; the rest leaves
#: room for the KEY_ACKs), so requests arrive no faster than the token answers them and no queue
#: builds up (10,000 drives: 0.52 s).
PULL_SPREAD_BASE_S = 0.02
PULL_SPREAD_PER_CSN_S = 0.00005
MAX_PULL_SPREAD_S = 5.0
#: A lost request or reply is retried first after RETRY_AFTER_SPREADS spread windows plus
#: RETRY_BASE_S (by then the token has answered the whole offer, and the drives' host has had
#: as long again to take the answers in), then RETRY_BACKOFF times as long each time (x1.5 rather
#: than x2: the few drives whose datagrams were lost twice or three times are not left waiting
#: tens of seconds), at most RETRY_MAX_S, all x[1, 1.5) jitter (drive_daemon/drive.retry_delay). MAX_PULL_ATTEMPTS
#: requests in all: with 5% of datagrams lost each way an attempt fails with p = 0.0975, and a
#: 10,000-drive pool has a drive give up with probability 10,000 x p**8 = 8e-5 (it pulls again
#: at the next announcement).
RETRY_BASE_S = 0.25
RETRY_AFTER_SPREADS = 2.0
RETRY_BACKOFF = 1.5
RETRY_MAX_S = 8.0
MAX_PULL_ATTEMPTS = 8
#: A token re-announces what it holds at this interval.
ANNOUNCE_INTERVAL_S = 5.0
#: After a write the token announces again after each of these gaps, then every
#: ANNOUNCE_INTERVAL_S: one lost broadcast must not hold a whole pool back a full interval (with
#: 5% loss, three sends all lost: 1 in 8,000). Drives already pulling or served ignore the repeats.
ANNOUNCE_REPEATS_S = (0.5, 1.0)
#: NO_PACKAGE cannot be authenticated, so it only delays: the drive does not ask that token
#: again for that timestamp for this long, never for good.
NO_PACKAGE_SKIP_S = 30.0
#: (token, timestamp) pairs a drive skips at once; beyond this a NO_PACKAGE only ends the pull.
MAX_SKIPPED_OFFERS = 16
#: Tokens one pull may ask in turn: an unverifiable offer (a drive without the KMS public
#: key) can at worst add a source that does not answer, never push a real one out.
MAX_PULL_SOURCES = 8
#: Distinct announcements whose signature check a process remembers (protocol/envelope.py):
#: 10,000 drives in one process verify one datagram once.
ANNOUNCEMENT_CACHE_SIZE = 256
#: KEY_REQUEST answers a token sends per CSN in one second (a drive's requests are at least
#: RETRY_BASE_S apart, so its pull never needs more); the excess is dropped and counted, so a spoofed source
#: cannot turn the token into a reflector. Requests for CSNs it does not hold share one
#: budget of KEY_REQUEST_UNKNOWN_ANSWERS_PER_S.
KEY_REQUEST_ANSWERS_PER_CSN_PER_S = 4
KEY_REQUEST_UNKNOWN_ANSWERS_PER_S = 64


# --- SCSI (SAM/SPC/SSC-3): the drive as a sequential-access LUN over iSCSI -----------


class ScsiStatus(enum.IntEnum):
    """SAM status byte."""

    GOOD = 0x00
    CHECK_CONDITION = 0x02
    BUSY = 0x08
    RESERVATION_CONFLICT = 0x18
    TASK_SET_FULL = 0x28
    TASK_ABORTED = 0x40


class ScsiOp(enum.IntEnum):
    """Operation codes of every command the emulated T10000 knows (docs/SCSI.md)."""

    TEST_UNIT_READY = 0x00
    REWIND = 0x01
    REQUEST_SENSE = 0x03
    READ_BLOCK_LIMITS = 0x05
    READ_6 = 0x08
    WRITE_6 = 0x0A
    WRITE_FILEMARKS_6 = 0x10
    SPACE_6 = 0x11
    INQUIRY = 0x12
    MODE_SELECT_6 = 0x15
    ERASE_6 = 0x19
    MODE_SENSE_6 = 0x1A
    LOAD_UNLOAD = 0x1B
    PREVENT_ALLOW_MEDIUM_REMOVAL = 0x1E
    LOCATE_10 = 0x2B
    READ_POSITION = 0x34
    REPORT_DENSITY_SUPPORT = 0x44
    LOG_SENSE = 0x4D
    MODE_SELECT_10 = 0x55
    MODE_SENSE_10 = 0x5A
    SPACE_16 = 0x91
    LOCATE_16 = 0x92
    REPORT_LUNS = 0xA0
    SECURITY_PROTOCOL_IN = 0xA2
    MAINTENANCE_IN = 0xA3
    SECURITY_PROTOCOL_OUT = 0xB5


#: MAINTENANCE IN service action of REPORT SUPPORTED OPERATION CODES (A3h/0Ch).
SA_REPORT_SUPPORTED_OPCODES = 0x0C


class ReadPositionForm(enum.IntEnum):
    """READ POSITION service actions (SSC-3 7.7)."""

    SHORT = 0x00  # 20 octets, block identifiers
    SHORT_VENDOR = 0x01
    LONG = 0x06  # 32 octets


class SpaceCode(enum.IntEnum):
    BLOCKS = 0
    FILEMARKS = 1
    SEQUENTIAL_FILEMARKS = 2
    END_OF_DATA = 3


class SenseResponse(enum.IntEnum):
    """Response code of fixed-format sense data."""

    CURRENT = 0x70
    DEFERRED = 0x71


class Asc(enum.IntEnum):
    """Additional sense code and qualifier, as ``ASC << 8 | ASCQ`` (SPC-3 Annex D names)."""

    NO_ADDITIONAL_SENSE = 0x0000
    FILEMARK_DETECTED = 0x0001
    BEGINNING_OF_PARTITION_MEDIUM_DETECTED = 0x0004
    END_OF_DATA_DETECTED = 0x0005
    NOT_READY_BECOMING_READY = 0x0401
    NOT_READY_INITIALIZING_COMMAND_REQUIRED = 0x0402
    PARAMETER_LIST_LENGTH_ERROR = 0x1A00
    INVALID_COMMAND_OPERATION_CODE = 0x2000
    INVALID_FIELD_IN_CDB = 0x2400
    LOGICAL_UNIT_NOT_SUPPORTED = 0x2500
    INVALID_FIELD_IN_PARAMETER_LIST = 0x2600
    NOT_READY_TO_READY_MEDIUM_MAY_HAVE_CHANGED = 0x2800
    POWER_ON_RESET_OR_BUS_DEVICE_RESET = 0x2900
    BUS_DEVICE_RESET_FUNCTION_OCCURRED = 0x2903
    MODE_PARAMETERS_CHANGED = 0x2A01
    SAVING_PARAMETERS_NOT_SUPPORTED = 0x3900
    MEDIUM_NOT_PRESENT = 0x3A00
    MEDIUM_REMOVAL_PREVENTED = 0x5302
    LOGICAL_UNIT_ACCESS_NOT_AUTHORIZED = 0x7471


#: Our LUN, one per target: LUN 0, a sequential-access device (peripheral device type 01h).
SCSI_PERIPHERAL_TAPE = 0x01
#: Densities (REPORT DENSITY SUPPORT, MODE SENSE block descriptor) as mhVTL's T10000 has them.
DENSITY_T10000A = 0x4A
DENSITY_T10000B = 0x4B
#: SECURITY PROTOCOL IN/OUT protocols.
SECURITY_PROTOCOL_INFO = 0x00
SECURITY_PROTOCOL_TAPE_ENCRYPTION = 0x20
#: SSC-3 algorithm code of AES-256-GCM (what our cartridges are written with).
ALGORITHM_AES256_GCM = 0x00010014


# --- iSCSI (RFC 7143): the names every side uses; the PDU numbers are in protocol/iscsi/ ---

#: TCP port of a drive's iSCSI target (the well-known iSCSI port), at the drive's static IP.
ISCSI_PORT = 3260
#: Our initiator's default name.
ISCSI_INITIATOR_IQN = "iqn.2026-11.org.t10k-lab:host"


def drive_iqn(csn: bytes) -> str:
    """The iSCSI target name of the drive with this CSN (one target per drive, LUN 0)."""
    return f"iqn.2026-11.org.t10k-lab:t10000.{csn.hex()}"
