"""The SSC device's informational commands: mode data, LOG SENSE, REPORT SUPPORTED
OPERATION CODES and SECURITY PROTOCOL IN pages (the encryption state from drive and tape)."""

from __future__ import annotations

from protocol.constants import (
    ALGORITHM_AES256_GCM,
    MAX_BLOCK_SIZE,
    SA_REPORT_SUPPORTED_OPCODES,
    SECURITY_PROTOCOL_INFO,
    SECURITY_PROTOCOL_TAPE_ENCRYPTION,
    Asc,
    EncryptionMode,
    NextBlockStatus,
    ScsiOp,
)
from protocol.scsi import CDB_LENGTHS, ModeParameters, ReportSupportedOperationCodes, SecurityProtocolIn
from protocol.scsi import data as d
from protocol.scsi import security as s

from ..tape import TapeSession
from .outcome import illegal, not_ready

DEVICE_CONFIGURATION_FLAGS8 = d.DEVICE_CONFIGURATION_BIS
DEVICE_CONFIGURATION_FLAGS10 = d.DEVICE_CONFIGURATION_SEW
MODE_PAGES = (d.MODE_PAGE_DATA_COMPRESSION, d.MODE_PAGE_DEVICE_CONFIGURATION)


def mode_page(code: int, changeable: bool) -> bytes:
    """Page 0Fh: no compression (DCC clear: the emulation stores blocks as written). Page 10h:
    block identifiers supported. Nothing is changeable but the block descriptor."""
    if code == d.MODE_PAGE_DATA_COMPRESSION:
        return d.PAGE_DATA_COMPRESSION.build(dict(dce_dcc=0, dde_red=0, compression_algorithm=0,
                                                  decompression_algorithm=0))
    return d.PAGE_DEVICE_CONFIGURATION.build(dict(
        active_format=0, active_partition=0, write_buffer_full_ratio=0, read_buffer_empty_ratio=0,
        write_delay_time=0, flags8=0 if changeable else DEVICE_CONFIGURATION_FLAGS8, gap_size=0,
        flags10=0 if changeable else DEVICE_CONFIGURATION_FLAGS10, buffer_size_at_early_warning=0,
        select_compression_algorithm=0, flags15=0))


def mode_data(page_code: int, subpage: int, pc: int, dbd: bool, density: int, block_length: int,
              buffered: int, ten: bool) -> bytes:
    if pc == 3:
        raise illegal(Asc.SAVING_PARAMETERS_NOT_SUPPORTED)
    if subpage not in (0, 0xFF) or page_code not in (0, d.MODE_PAGE_ALL, *MODE_PAGES):
        raise illegal()
    codes = MODE_PAGES if page_code == d.MODE_PAGE_ALL else () if page_code == 0 else (page_code,)
    changeable = pc == 1
    params = ModeParameters(
        write_protect=False, buffered_mode=0 if changeable else buffered,
        density_code=None if dbd else (0 if changeable else density),
        block_length=0xFFFFFF if changeable else (0 if pc == 2 else block_length),
        pages={c: mode_page(c, changeable) for c in codes})
    return params.build(ten)


def block_length_ok(length: int) -> bool:
    return 0 <= length <= MAX_BLOCK_SIZE


def supported_opcodes(cdb: ReportSupportedOperationCodes) -> bytes:
    if cdb.service_action != SA_REPORT_SUPPORTED_OPCODES:
        raise illegal()
    if cdb.reporting_options == 0:
        return d.all_commands([(op, SA_REPORT_SUPPORTED_OPCODES if op == ScsiOp.MAINTENANCE_IN else None, n)
                               for op, n in sorted(CDB_LENGTHS.items())])
    op = cdb.requested_opcode
    if cdb.reporting_options == 1:
        if op == ScsiOp.MAINTENANCE_IN:
            raise illegal()  # a service-action command: ask with reporting options 2
        return d.one_command(op in CDB_LENGTHS, _usage(op))
    if cdb.reporting_options == 2:
        ok = op == ScsiOp.MAINTENANCE_IN and cdb.requested_service_action == SA_REPORT_SUPPORTED_OPCODES
        return d.one_command(ok, _usage(op) if ok else b"")
    raise illegal()


def _usage(op: int) -> bytes:
    """CDB usage data: the opcode, then every octet marked used except the control octet's
    reserved bits (a coarse map: the catalogue's reserved bits are not marked out)."""
    n = CDB_LENGTHS.get(op)
    if n is None:
        return b""
    usage = bytes([op]) + b"\xff" * (n - 2) + b"\x07"
    return usage[:1] + bytes([SA_REPORT_SUPPORTED_OPCODES | 0xE0]) + usage[2:] if op == ScsiOp.MAINTENANCE_IN else usage


def log_page(page_code: int, alerts: set[int]) -> bytes:
    if page_code == d.LOG_PAGE_SUPPORTED:
        return d.log_page(page_code, bytes([d.LOG_PAGE_SUPPORTED, d.LOG_PAGE_TAPE_ALERT]))
    if page_code == d.LOG_PAGE_TAPE_ALERT:
        return d.tape_alert_page(alerts)
    raise illegal()


def security_in(cdb: SecurityProtocolIn, tape: TapeSession) -> bytes:
    if cdb.inc_512:
        raise illegal()
    page = cdb.protocol_specific
    if cdb.security_protocol == SECURITY_PROTOCOL_INFO:
        if page == s.SP_SUPPORTED_PROTOCOLS:
            return s.supported_protocols([SECURITY_PROTOCOL_INFO, SECURITY_PROTOCOL_TAPE_ENCRYPTION])
        if page == s.SP_CERTIFICATE:
            return s.certificate()
        raise illegal()
    if cdb.security_protocol != SECURITY_PROTOCOL_TAPE_ENCRYPTION:
        raise illegal()
    drive = tape.drive
    if page == s.TDE_SUPPORTED_PAGES:
        return s.tde_page(page, s.page_list(s.TDE_IN_PAGES))
    if page == s.TDE_SUPPORTED_OUT_PAGES:
        return s.tde_page(page, b"")  # none: a host cannot set keys here
    if page == s.TDE_CAPABILITIES:
        return s.capabilities(drive.encrypting, tape.cartridge is not None, ALGORITHM_AES256_GCM)
    if page == s.TDE_SUPPORTED_KEY_FORMATS:
        return s.tde_page(page, b"")
    status = tape.encryption_status()
    if page == s.TDE_DATA_ENCRYPTION_STATUS:
        if status.mode is EncryptionMode.ENCRYPT:
            counter = int.from_bytes(status.write_key_id[4:], "big")  # the key's ordinal within its KMS
            return s.DataEncryptionStatus(EncryptionMode.ENCRYPT, s.DECRYPTION_MODE_MIXED, 1, counter,
                                          status.write_key_id).build()
        return s.DataEncryptionStatus(EncryptionMode.OFF, s.DECRYPTION_MODE_DISABLE, 0).build()
    if page == s.TDE_NEXT_BLOCK_ENCRYPTION_STATUS:
        if tape.cartridge is None:
            raise not_ready()
        encrypted = status.next_status in (NextBlockStatus.ENCRYPTED, NextBlockStatus.ENCRYPTED_KEY_MISSING)
        return s.NextBlockEncryptionStatus(status.next_block, status.next_status, 1 if encrypted else 0,
                                           status.next_key_id if encrypted else None).build()
    raise illegal()
