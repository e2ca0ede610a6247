"""
What the kernel knows about a client's TCP connection that Twisted does not
say: how many bytes the peer has acknowledged.

Bytes handed to the kernel are not bytes a client took: Linux queues
megabytes for a peer that never reads (our send buffer, and its receive
buffer, which its kernel acknowledges without the application reading).
The count of acknowledged bytes stops moving only once the peer's receive
window is closed, that is once the peer has stopped reading and its buffers
are full; it is the truest sign of "took nothing" that a plain TCP listener
can get.
"""

from __future__ import annotations

import socket
import struct
import sys

from twisted.protocols.tls import TLSMemoryBIOProtocol

_TCP_INFO = getattr(socket, "TCP_INFO", None) if sys.platform.startswith("linux") else None
# Linux's struct tcp_info (include/uapi/linux/tcp.h): 8 one-byte fields,
# 24 32-bit fields, tcpi_pacing_rate and tcpi_max_pacing_rate (64 bits
# each), then tcpi_bytes_acked, the 64-bit RFC 4898
# tcpEStatsAppHCThruOctetsAcked, since Linux 4.1.
_BYTES_ACKED = struct.Struct("=Q")
_BYTES_ACKED_OFFSET = 8 + 24 * 4 + 2 * 8
_TCP_INFO_SIZE = 256


def bytesAcked(transport: object) -> int | None:
    """
    The bytes of data the peer of a TCP connection has acknowledged so far
    (for a TLS connection, bytes of the TLS records under it).

    @param transport: a Twisted TCP transport, a TLS transport over one
        (looked through to the TCP connection), or anything else.
    @return: the count, which grows when the peer's kernel takes data into
        its receive buffer and stops while its window is closed; or C{None}
        where the kernel does not tell: not a TCP socket (UNIX, a test
        transport), not Linux, a Linux before 4.1, a closed socket.
    """
    if isinstance(transport, TLSMemoryBIOProtocol):
        transport = transport.transport
    getHandle = getattr(transport, "getHandle", None)
    if _TCP_INFO is None or getHandle is None:
        return None
    handle = getHandle()
    if not isinstance(handle, socket.socket) or handle.family not in (socket.AF_INET, socket.AF_INET6):
        return None
    try:
        info = handle.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _TCP_INFO_SIZE)
    except OSError:
        return None
    if len(info) < _BYTES_ACKED_OFFSET + _BYTES_ACKED.size:
        return None
    acked: int = _BYTES_ACKED.unpack_from(info, _BYTES_ACKED_OFFSET)[0]
    return acked
