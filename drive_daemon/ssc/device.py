"""The sans-I/O SSC-3 device: one CDB, its data-out and the time in; status, data-in, sense out.

It owns only what SCSI adds (unit attentions per I_T nexus, the last sense, mode parameters,
TapeAlert flags, medium removal prevention); every media access goes through the drive's
:class:`~drive_daemon.tape.TapeSession`, the one home of the seed's appendix rules.
"""

from __future__ import annotations

from typing import Callable

from protocol.constants import Asc, ScsiOp, ScsiStatus
from protocol.constants import MAX_BLOCK_SIZE
from protocol.scsi import (
    NO_SENSE,
    BlockLimits,
    Inquiry,
    LogSense,
    ModeSelect6,
    ModeSelect10,
    ModeSense6,
    ModeSense10,
    PreventAllowMediumRemoval,
    ReadBlockLimits,
    ReportDensitySupport,
    ReportLuns,
    ReportSupportedOperationCodes,
    RequestSense,
    ScsiFormatError,
    SecurityProtocolIn,
    SecurityProtocolOut,
    SenseData,
    TestUnitReady,
    UnknownOpcode,
    decode_cdb,
)
from protocol.scsi import data as d
from protocol.sense import Condition, SenseKey, sense_for

from ..cartridge import CorruptRecord
from ..drive import Output
from ..tape import TapeCheck, TapeSession
from . import media, pages
from .identity import Identity
from .outcome import Check, ScsiOutcome, illegal, not_ready

#: Commands that neither report nor clear a unit attention (SPC-3 5.9.7).
_UA_EXEMPT = (ScsiOp.INQUIRY, ScsiOp.REPORT_LUNS, ScsiOp.REQUEST_SENSE)
_READ_CONDITIONS = {Condition.NO_KEYS, Condition.MISSING_KEY, Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_READ}
_WRITE_CONDITIONS = {Condition.ENCRYPTED_MEDIA_ON_NON_ENCRYPTING_WRITE, Condition.PLAIN_MEDIA_ON_ENCRYPTING_WRITE}

Handler = Callable[..., bytes]


class SscDevice:
    """LUN 0 of a drive's iSCSI target: a StorageTek T10000 (docs/SCSI.md)."""

    def __init__(self, tape: TapeSession, *, model: str = "T10000A", identity: Identity | None = None) -> None:
        self.tape = tape
        self.identity = identity or Identity.of(model, tape.drive.csn, tape.drive.encrypting)
        #: Pending unit attentions per I_T nexus, oldest first; a nexus not here is new.
        self._ua: dict[str, list[Asc]] = {}
        self._last_sense: dict[str, bytes] = {}
        self._prevent: set[str] = set()
        self._generation = tape.load_generation
        #: Mode parameters, shared by every nexus: 0 = variable-length blocks.
        self.block_length = 0
        self.buffered_mode = 1
        #: TapeAlert flags raised since the last LOG SENSE of page 2Eh.
        self.alerts: set[int] = set()

    # --- the interface the iSCSI target calls ------------------------------------------

    def execute(self, nexus: str, cdb: bytes, data_out: bytes | memoryview | None, now: float) -> ScsiOutcome:
        out = Output()
        self._notice_loads(exclude=None)
        pending = self._ua.setdefault(nexus, [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET])
        try:
            try:
                command = decode_cdb(cdb)
            except UnknownOpcode:
                raise illegal(Asc.INVALID_COMMAND_OPERATION_CODE) from None
            except ScsiFormatError:
                raise illegal() from None
            if command.OP != ScsiOp.REQUEST_SENSE:
                self._last_sense.pop(nexus, None)  # kept for the REQUEST SENSE that follows, only
            if pending and command.OP not in _UA_EXEMPT:
                raise Check(SenseData.code(SenseKey.UNIT_ATTENTION, pending.pop(0)))
            handler = _HANDLERS[command.OP]
            data = handler(self, nexus, command, data_out if data_out is not None else b"", now, out)
            outcome = ScsiOutcome(ScsiStatus.GOOD, data)
        except Check as check:
            outcome = self._check(nexus, check.sense, check.data)
        except TapeCheck as tc:
            outcome = self._check(nexus, self.sense_of(tc))
        except CorruptRecord as exc:
            outcome = self._check(nexus, self.sense_of(TapeCheck(Condition.MEDIUM_CORRUPT, str(exc))))
        if out.sends or out.events or out.persist:
            outcome.output = out
        return outcome

    def lun_reset(self, now: float) -> None:
        """LOGICAL UNIT RESET or a target reset: every nexus gets 29h/03h; mode parameters and
        medium removal prevention return to their defaults."""
        for pending in self._ua.values():
            pending[:] = [Asc.BUS_DEVICE_RESET_FUNCTION_OCCURRED]
        self._last_sense.clear()
        self._prevent.clear()
        self.block_length, self.buffered_mode = 0, 1

    def power_on(self) -> None:
        """The drive's power returned: every nexus starts again with 29h/00h; defaults restored."""
        self.lun_reset(0.0)
        for pending in self._ua.values():
            pending[:] = [Asc.POWER_ON_RESET_OR_BUS_DEVICE_RESET]

    def nexus_lost(self, nexus: str) -> None:
        """The session ended: forget the nexus (a new one starts with a power-on UA)."""
        self._ua.pop(nexus, None)
        self._last_sense.pop(nexus, None)
        self._prevent.discard(nexus)

    # --- sense ----------------------------------------------------------------------------

    def sense_of(self, tc: TapeCheck, information: int | None = None) -> SenseData:
        """The seed's SK/ASC-ASCQ/FSC for a tape condition, in the drive's profile, with the key ID."""
        if tc.condition in _READ_CONDITIONS:
            self.alerts.add(d.TAPE_ALERT_READ_FAILURE)
        elif tc.condition in _WRITE_CONDITIONS:
            self.alerts.add(d.TAPE_ALERT_WRITE_FAILURE)
        elif tc.condition is Condition.MEDIUM_CORRUPT:
            self.alerts.add(d.TAPE_ALERT_MEDIA)
        return SenseData.of(sense_for(tc.condition, self.tape.profile), key_id=tc.key_id, information=information,
                            filemark=tc.condition is Condition.FILEMARK,
                            eom=tc.condition is Condition.BEGINNING_OF_TAPE)

    def _check(self, nexus: str, sense: SenseData, data: bytes | memoryview = b"") -> ScsiOutcome:
        raw = sense.build()
        self._last_sense[nexus] = raw
        return ScsiOutcome(ScsiStatus.CHECK_CONDITION, data, raw)

    def unit_attention(self, asc: Asc, *, exclude: str | None = None) -> None:
        """Queue a unit attention for every known nexus but ``exclude``."""
        for nexus, pending in self._ua.items():
            if nexus != exclude and asc not in pending:
                pending.append(asc)

    def _notice_loads(self, exclude: str | None) -> None:
        """A cartridge loaded (by the operator, or a LOAD from ``exclude``): 28h/00h for the others."""
        if self.tape.load_generation != self._generation:
            self._generation = self.tape.load_generation
            self.unit_attention(Asc.NOT_READY_TO_READY_MEDIUM_MAY_HAVE_CHANGED, exclude=exclude)

    def ready(self) -> None:
        if self.tape.cartridge is None:
            raise not_ready()

    # --- commands that do not touch the medium ----------------------------------------------

    def _test_unit_ready(self, nexus: str, cdb: TestUnitReady, data_out: bytes, now: float, out: Output) -> bytes:
        self.ready()
        return b""

    def _inquiry(self, nexus: str, cdb: Inquiry, data_out: bytes, now: float, out: Output) -> bytes:
        if not cdb.evpd:
            if cdb.page_code:
                raise illegal()
            return self.identity.inquiry()[:cdb.allocation_length]
        page = self.identity.vpd(cdb.page_code)
        if page is None:
            raise illegal()
        return page[:cdb.allocation_length]

    def _report_luns(self, nexus: str, cdb: ReportLuns, data_out: bytes, now: float, out: Output) -> bytes:
        if cdb.select_report not in (0, 1, 2):
            raise illegal()
        return d.report_luns([0])[:cdb.allocation_length]

    def _request_sense(self, nexus: str, cdb: RequestSense, data_out: bytes, now: float, out: Output) -> bytes:
        """A pending unit attention (cleared), else the last sense of this nexus (once), else
        NOT READY without a cartridge, else NO SENSE."""
        if cdb.desc:
            raise illegal()
        pending = self._ua[nexus]
        if pending:
            raw = SenseData.code(SenseKey.UNIT_ATTENTION, pending.pop(0)).build()
        elif nexus in self._last_sense:
            raw = self._last_sense.pop(nexus)
        elif self.tape.cartridge is None:
            raw = SenseData.code(SenseKey.NOT_READY, Asc.MEDIUM_NOT_PRESENT).build()
        else:
            raw = NO_SENSE.build()
        return raw[:cdb.allocation_length]

    def _read_block_limits(self, nexus: str, cdb: ReadBlockLimits, data_out: bytes, now: float, out: Output) -> bytes:
        return BlockLimits(MAX_BLOCK_SIZE, 1).build()

    def _mode_sense(self, nexus: str, cdb: ModeSense6 | ModeSense10, data_out: bytes, now: float, out: Output) -> bytes:
        raw = pages.mode_data(cdb.page_code, cdb.subpage_code, cdb.pc, cdb.dbd, self.identity.native_density,
                              self.block_length, self.buffered_mode, ten=isinstance(cdb, ModeSense10))
        return raw[:cdb.allocation_length]

    def _mode_select(self, nexus: str, cdb: ModeSelect6 | ModeSelect10, data_out: bytes, now: float, out: Output) -> bytes:
        length = cdb.parameter_list_length
        if cdb.sp:
            raise illegal()
        if length == 0:
            return b""
        if len(data_out) < length:
            raise illegal(Asc.PARAMETER_LIST_LENGTH_ERROR)
        try:
            params = d.ModeParameters.parse(data_out[:length], ten=isinstance(cdb, ModeSelect10))
        except ScsiFormatError:
            raise illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST) from None
        if params.density_code not in (None, 0, *self.identity.densities):
            raise illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        if not pages.block_length_ok(params.block_length) or set(params.pages) - set(pages.MODE_PAGES):
            raise illegal(Asc.INVALID_FIELD_IN_PARAMETER_LIST)
        before = (self.block_length, self.buffered_mode)
        if params.density_code is not None:
            self.block_length = params.block_length
        self.buffered_mode = 1 if params.buffered_mode else 0
        if (self.block_length, self.buffered_mode) != before:
            self.unit_attention(Asc.MODE_PARAMETERS_CHANGED, exclude=nexus)
        return b""

    def _prevent_allow(self, nexus: str, cdb: PreventAllowMediumRemoval, data_out: bytes, now: float, out: Output) -> bytes:
        prevent = cdb.prevent
        if prevent not in (0, 1):
            raise illegal()
        (self._prevent.add if prevent else self._prevent.discard)(nexus)
        return b""

    def _report_density(self, nexus: str, cdb: ReportDensitySupport, data_out: bytes, now: float, out: Output) -> bytes:
        if cdb.medium_type:
            raise illegal()
        if cdb.media:
            self.ready()
        raw = d.density_support(self.identity.density_descriptors(cdb.media))
        return raw[:cdb.allocation_length]

    def _log_sense(self, nexus: str, cdb: LogSense, data_out: bytes, now: float, out: Output) -> bytes:
        if cdb.sp or cdb.subpage_code:
            raise illegal()
        raw = pages.log_page(cdb.page_code, self.alerts)
        if cdb.page_code == d.LOG_PAGE_TAPE_ALERT:
            self.alerts.clear()  # TapeAlert flags clear when read
        return raw[:cdb.allocation_length]

    def _report_opcodes(self, nexus: str, cdb: ReportSupportedOperationCodes, data_out: bytes, now: float, out: Output) -> bytes:
        return pages.supported_opcodes(cdb)[:cdb.allocation_length]

    def _security_in(self, nexus: str, cdb: SecurityProtocolIn, data_out: bytes, now: float, out: Output) -> bytes:
        return pages.security_in(cdb, self.tape)[:cdb.allocation_length]

    def _security_out(self, nexus: str, cdb: SecurityProtocolOut, data_out: bytes, now: float, out: Output) -> bytes:
        """Keys come from the KMS through the token, never from a host: refused, whatever the page."""
        raise illegal(Asc.LOGICAL_UNIT_ACCESS_NOT_AUTHORIZED)


_HANDLERS: dict[int, Handler] = {
    ScsiOp.TEST_UNIT_READY: SscDevice._test_unit_ready,
    ScsiOp.INQUIRY: SscDevice._inquiry,
    ScsiOp.REPORT_LUNS: SscDevice._report_luns,
    ScsiOp.REQUEST_SENSE: SscDevice._request_sense,
    ScsiOp.READ_BLOCK_LIMITS: SscDevice._read_block_limits,
    ScsiOp.MODE_SENSE_6: SscDevice._mode_sense,
    ScsiOp.MODE_SENSE_10: SscDevice._mode_sense,
    ScsiOp.MODE_SELECT_6: SscDevice._mode_select,
    ScsiOp.MODE_SELECT_10: SscDevice._mode_select,
    ScsiOp.PREVENT_ALLOW_MEDIUM_REMOVAL: SscDevice._prevent_allow,
    ScsiOp.REPORT_DENSITY_SUPPORT: SscDevice._report_density,
    ScsiOp.LOG_SENSE: SscDevice._log_sense,
    ScsiOp.MAINTENANCE_IN: SscDevice._report_opcodes,
    ScsiOp.SECURITY_PROTOCOL_IN: SscDevice._security_in,
    ScsiOp.SECURITY_PROTOCOL_OUT: SscDevice._security_out,
    **media.HANDLERS,
}
assert set(_HANDLERS) == set(ScsiOp), set(ScsiOp) - set(_HANDLERS)
