"""The settings of a drive's iSCSI target (the lead wires them into the drive host's config)."""

from __future__ import annotations

from dataclasses import dataclass

from protocol.constants import ISCSI_PORT


@dataclass(frozen=True)
class IscsiConfig:
    """One portal's target: its name, what it negotiates, its limits."""

    target_name: str
    port: int = ISCSI_PORT
    alias: str = ""
    portal_group_tag: int = 1
    #: (name, secret) an initiator must prove with CHAP to log in to the target; None: no authentication
    chap: tuple[str, str] | None = None
    #: (name, secret) the target proves back when the initiator asks (mutual CHAP)
    mutual_chap: tuple[str, str] | None = None
    #: digests the target accepts, in its order of preference ("None" allows none)
    digests: str = "None,CRC32C"
    #: the largest data segment the target receives (declared MaxRecvDataSegmentLength)
    max_recv_data_segment: int = 262144
    #: the largest bursts it agrees to (the initiator's offer may lower them)
    max_burst: int = 16776192
    first_burst: int = 262144
    max_outstanding_r2t: int = 4
    #: the target prefers unsolicited data (InitialR2T=No) and immediate data
    initial_r2t: bool = False
    immediate_data: bool = True
    #: commands the target accepts ahead of the one it is executing (the CmdSN window)
    queue_depth: int = 32
    #: a connection silent this long gets a NOP-In ping, then is closed if still silent
    idle_timeout_s: float = 300.0
    #: listen backlog of the portal socket
    backlog: int = 128
    #: the most a connection may have buffered and unanswered (received data plus unsent replies)
    max_buffered_bytes: int = 64 * 1024 * 1024
    #: the longest write a command may announce (Expected Data Transfer Length); longer ones get
    #: CHECK CONDITION, ILLEGAL REQUEST, INVALID FIELD IN CDB before any buffer is allocated
    max_transfer_bytes: int = 64 * 1024 * 1024

    def target_keys(self) -> dict[str, str]:
        """Our side of the operational keys (see protocol.iscsi.negotiation)."""
        return {
            "HeaderDigest": self.digests,
            "DataDigest": self.digests,
            "MaxConnections": "1",
            "InitialR2T": "Yes" if self.initial_r2t else "No",
            "ImmediateData": "Yes" if self.immediate_data else "No",
            "MaxRecvDataSegmentLength": str(self.max_recv_data_segment),
            "MaxBurstLength": str(self.max_burst),
            "FirstBurstLength": str(self.first_burst),
            "DefaultTime2Wait": "0",
            "DefaultTime2Retain": "0",
            "MaxOutstandingR2T": str(self.max_outstanding_r2t),
            "DataPDUInOrder": "Yes",
            "DataSequenceInOrder": "Yes",
            "ErrorRecoveryLevel": "0",
            "IFMarker": "No",
            "OFMarker": "No",
        }
