"""A small sequential-access LUN for the iSCSI transport's tests (a boundary mock: those
tests are about iSCSI, the real SSC device lives in drive_daemon/ssc/).

It answers INQUIRY (standard, VPD 00/80/83) as a tape, TEST UNIT READY (a power-on UNIT
ATTENTION first for every nexus), REPORT LUNS, REQUEST SENSE, REWIND, and READ(6)/WRITE(6)
in variable-block mode on blocks kept in memory (a short read sets ILI and the residue).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from drive_daemon.iscsi.lun import ScsiOutcome

GOOD, CHECK_CONDITION = 0x00, 0x02


def sense(key: int, asc: int, ascq: int, *, ili: bool = False, info: int = 0) -> bytes:
    s = bytearray(18)
    s[0] = 0xF0 if ili else 0x70
    s[2] = key | (0x20 if ili else 0)
    s[3:7] = (info & 0xFFFFFFFF).to_bytes(4, "big")
    s[7] = 10
    s[12], s[13] = asc, ascq
    return bytes(s)


@dataclass
class MemoryTapeLun:
    serial: str = "TEST0001"
    blocks: list[bytes] = field(default_factory=list)
    position: int = 0
    keep_data: bool = True
    fresh: set[str] = field(default_factory=set)      # nexuses that saw their power-on UA
    resets: int = 0
    lost: list[str] = field(default_factory=list)
    calls: list[tuple[str, bytes, int]] = field(default_factory=list)
    written: int = 0

    def execute(self, nexus: str, cdb: bytes, data_out: bytes | memoryview | None, now: float) -> ScsiOutcome:
        op = cdb[0]
        self.calls.append((nexus, bytes(cdb[:6]), len(data_out) if data_out is not None else -1))
        if op not in (0x12, 0xA0, 0x03) and nexus not in self.fresh:
            self.fresh.add(nexus)
            return ScsiOutcome(CHECK_CONDITION, sense=sense(0x6, 0x29, 0x00))
        if op == 0x00:  # TEST UNIT READY
            return ScsiOutcome(GOOD)
        if op == 0x03:  # REQUEST SENSE
            return ScsiOutcome(GOOD, sense(0, 0, 0)[:cdb[4]])
        if op == 0x12:
            return ScsiOutcome(GOOD, self._inquiry(cdb)[:int.from_bytes(cdb[3:5], "big")])
        if op == 0xA0:  # REPORT LUNS: LUN 0 only
            return ScsiOutcome(GOOD, (8).to_bytes(4, "big") + bytes(4) + bytes(8))
        if op == 0x01:  # REWIND
            self.position = 0
            return ScsiOutcome(GOOD)
        if op == 0x0A:  # WRITE(6), variable
            assert data_out is not None and len(data_out) == int.from_bytes(cdb[2:5], "big")
            self.written += len(data_out)
            if self.keep_data:
                del self.blocks[self.position:]
                self.blocks.append(bytes(data_out))
                self.position += 1
            return ScsiOutcome(GOOD)
        if op == 0x08:  # READ(6), variable
            want = int.from_bytes(cdb[2:5], "big")
            if self.position >= len(self.blocks):
                return ScsiOutcome(CHECK_CONDITION, sense=sense(0x8, 0x00, 0x05))  # BLANK CHECK, end of data
            block = self.blocks[self.position]
            self.position += 1
            if len(block) != want:
                return ScsiOutcome(CHECK_CONDITION, block[:want], sense(0, 0, 0, ili=True, info=want - len(block)))
            return ScsiOutcome(GOOD, block)
        return ScsiOutcome(CHECK_CONDITION, sense=sense(0x5, 0x20, 0x00))

    def _inquiry(self, cdb: bytes) -> bytes:
        if cdb[1] & 1:
            page = cdb[2]
            if page == 0x00:
                return bytes([1, 0x00, 0, 3, 0x00, 0x80, 0x83])
            if page == 0x80:
                return bytes([1, 0x80, 0, len(self.serial)]) + self.serial.encode()
            if page == 0x83:
                ident = b"STK     T10000B " + self.serial.encode()
                desc = bytes([0x02, 0x01, 0, len(ident)]) + ident
                return bytes([1, 0x83, 0, len(desc)]) + desc
            return b""
        data = bytearray(36)
        data[0], data[1], data[2], data[3], data[4] = 0x01, 0x80, 0x06, 0x02, 31
        data[8:16] = b"STK     "
        data[16:32] = b"T10000B         "
        data[32:36] = b"0107"
        return bytes(data)

    def lun_reset(self, now: float) -> None:
        self.resets += 1
        self.fresh.clear()

    def nexus_lost(self, nexus: str) -> None:
        self.lost.append(nexus)
        self.fresh.discard(nexus)  # its next command sees a unit attention again (SAM: I_T nexus loss)
