"""Who the LUN says it is: a StorageTek T10000A or T10000B of the KMS 1.2 era.

INQUIRY, the VPD pages and the densities follow mhVTL's T10000 personality (the best public
description of what a T10000 answers); the serial number is the drive's CSN.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.constants import DENSITY_T10000A, DENSITY_T10000B, SCSI_PERIPHERAL_TAPE
from protocol.scsi import DensityDescriptor, InquiryData
from protocol.scsi import data as d

VENDOR = "STK"
REVISION = "1.42"

_DENSITIES = {
    DENSITY_T10000A: DensityDescriptor(DENSITY_T10000A, DENSITY_T10000A, d.DENSITY_WRTOK, 0, 127, 768, 500_000,
                                       VENDOR, "T1-500", "T10000A 500 GB"),
    DENSITY_T10000B: DensityDescriptor(DENSITY_T10000B, DENSITY_T10000B, d.DENSITY_WRTOK, 0, 127, 1152, 1_000_000,
                                       VENDOR, "T1-1000", "T10000B 1000 GB"),
}


@dataclass(frozen=True)
class Identity:
    product: str  # "T10000A" or "T10000B"
    serial: str
    csn: bytes
    encrypting: bool
    revision: str = REVISION

    @classmethod
    def of(cls, model: str, csn: bytes, encrypting: bool) -> Identity:
        """From the manufacturing model: T10000A, T10000B, or the non-encrypting T10000A-2G."""
        product = "T10000B" if model.startswith("T10000B") else "T10000A"
        return cls(product, csn.hex().upper(), csn, encrypting)

    @property
    def native_density(self) -> int:
        return DENSITY_T10000B if self.product == "T10000B" else DENSITY_T10000A

    @property
    def densities(self) -> list[int]:
        """What the drive reads and writes: a T10000B also handles T10000A media."""
        return [DENSITY_T10000A, DENSITY_T10000B] if self.product == "T10000B" else [DENSITY_T10000A]

    def density_descriptors(self, media_only: bool) -> list[DensityDescriptor]:
        codes = [self.native_density] if media_only else self.densities
        out = []
        for code in codes:
            desc = _DENSITIES[code]
            flags = desc.flags | (d.DENSITY_DEFLT if code == self.native_density else 0)
            out.append(DensityDescriptor(**{**desc.__dict__, "flags": flags}))
        return out

    def inquiry(self) -> bytes:
        vendor_specific = bytearray(20)
        if self.encrypting:  # octets 54 and 55, as mhVTL's T10000 sets them
            vendor_specific[d.INQUIRY_DPKM_OCTET - 36] |= d.INQUIRY_DPKM_BIT
            vendor_specific[d.INQUIRY_ENCRYPT_OCTET - 36] |= d.INQUIRY_ENCRYPT_BIT
        return InquiryData(VENDOR, self.product, self.revision, peripheral=SCSI_PERIPHERAL_TAPE,
                           vendor_specific=bytes(vendor_specific)).build()

    def vpd(self, page: int) -> bytes | None:
        if page == d.VPD_SUPPORTED_PAGES:
            return d.vpd_page(page, bytes(VPD_PAGES))
        if page == d.VPD_UNIT_SERIAL_NUMBER:
            return d.vpd_page(page, self.serial.encode("ascii"))
        if page == d.VPD_DEVICE_IDENTIFICATION:
            t10 = f"{VENDOR:<8}{self.product:<16}{self.serial}".encode("ascii")
            return d.vpd_page(page, d.designator(d.CODE_SET_ASCII, d.DESIGNATOR_T10_VENDOR_ID, t10)
                              + d.designator(d.CODE_SET_BINARY, d.DESIGNATOR_EUI64, self.csn))
        if page == d.VPD_SEQUENTIAL_ACCESS_CAPABILITIES:
            return d.vpd_page(page, bytes(2))  # no WORM
        return None


VPD_PAGES = (d.VPD_SUPPORTED_PAGES, d.VPD_UNIT_SERIAL_NUMBER, d.VPD_DEVICE_IDENTIFICATION,
             d.VPD_SEQUENTIAL_ACCESS_CAPABILITIES)
