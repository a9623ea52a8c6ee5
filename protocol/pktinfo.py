"""Linux's ``struct in_pktinfo`` (ip(7), IP_PKTINFO): the one binary layout of the kernel we speak.

A drive host in shared-sockets mode receives every drive's datagrams on one socket bound
to the wildcard address; the kernel tells it each datagram's destination address in an
IP_PKTINFO control message, and the host answers from the drive's own address by giving
that address as ``ipi_spec_dst`` of the control message it sends. Declared once here,
compiled to one ``struct.Struct`` (protocol/fastcodec.fixed_struct) for the hot path.
"""

from __future__ import annotations

import struct

from construct import Bytes, Struct

from .fastcodec import fixed_struct

__all__ = ["IP_PKTINFO", "PktInfo", "PKTINFO", "pktinfo_for_source"]

#: The socket option (level IPPROTO_IP) and control-message type; Linux's value. Python 3.11's
#: socket module lacks it.
IP_PKTINFO = 8

#: ``struct in_pktinfo { int ipi_ifindex; struct in_addr ipi_spec_dst; struct in_addr ipi_addr; }``.
#: ``ipi_ifindex`` is a C int in the host's byte order: kept as its 4 octets, because we only ever
#: send 0 (the kernel routes by ``ipi_spec_dst``) and read only the two addresses, which are in
#: network order (``socket.inet_aton``'s form).
PktInfo = Struct(
    "ipi_ifindex" / Bytes(4),
    #: received: the local address the datagram was routed to; sent: the source address to use
    "ipi_spec_dst" / Bytes(4),
    #: received: the destination address in the datagram's IP header
    "ipi_addr" / Bytes(4),
)
assert PktInfo.sizeof() == 12

#: The same layout as one struct call: (ifindex, spec_dst, addr) octets.
PKTINFO: struct.Struct = fixed_struct(PktInfo)

_ANY_INTERFACE = bytes(4)


def pktinfo_for_source(address: bytes) -> bytes:
    """The IP_PKTINFO control data that makes a datagram leave from ``address`` (4 octets)."""
    return PKTINFO.pack(_ANY_INTERFACE, address, bytes(4))
