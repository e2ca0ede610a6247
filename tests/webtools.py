"""
Helpers for the tests of streamd.web: an HTTP context on an in-memory hub,
WebSocket frames and Server-Sent Events read back.
"""

from __future__ import annotations

import json
import os
import tempfile
from struct import unpack_from
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import FlowControl, ServerConfig, StreamsConfig
from streamd.fanout.streams import Streams
from streamd.session import Connections
from streamd.stats import Stats
from streamd.web.channel import StreamdChannel
from streamd.web.context import WebContext
from streamd.web.site import makeSite

EPOCH = "00112233aabbccdd"

HANDSHAKE = (
    b"GET /ws%s HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
)


class TCPLikeTransport(StringTransport):
    """
    A L{StringTransport} that, as TCP's, lets a protocol unregister a
    producer it does not have (autobahn does when it drops a connection),
    and says whether it was aborted.
    """

    aborted = False

    def abortConnection(self) -> None:
        self.aborted = True
        super().abortConnection()

    def unregisterProducer(self) -> None:
        if self.producer is not None:
            super().unregisterProducer()


class SiteConnection:
    """
    One HTTP connection to a site on a test transport.
    """

    port = 30000

    def __init__(self, context: WebContext, site: object | None = None) -> None:
        SiteConnection.port += 1
        peer = IPv4Address("TCP", "127.0.0.1", SiteConnection.port)
        self.peer = f"127.0.0.1:{peer.port}"
        site = site or makeSite(context)
        self.channel: StreamdChannel = site.buildProtocol(peer)  # type: ignore[attr-defined]
        self.transport = TCPLikeTransport(peerAddress=peer)
        self.transport.protocol = self.channel
        self.channel.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def status(self) -> int:
        return int(self.transport.value().split(b" ", 2)[1])

    def answers(self) -> int:
        return self.transport.value().count(b"HTTP/1.1 ")

    def body(self) -> bytes:
        """
        The body of the first answer (not chunked).
        """
        return self.transport.value().partition(b"\r\n\r\n")[2]

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


def webContext(
    config: ServerConfig | None = None,
    flow: FlowControl | None = None,
    publicMetrics: bool = False,
    streamsConfig: StreamsConfig | None = None,
) -> WebContext:
    """
    A context on the fresh streams of a L{Clock}, whose default stream's
    epoch is L{EPOCH}.
    """
    clock = Clock()
    streams = Streams(Stats(), clock, flow or FlowControl(), streamsConfig or StreamsConfig())
    hub = streams.default
    hub.history.epoch = bytes.fromhex(EPOCH)
    config = config or ServerConfig()
    connections = Connections(config.maxPartialBytes, clock)
    return WebContext(hub, clock, config, connections, "tcp:0", publicMetrics, streams=streams)


def tokenConfig(case: Any, token: str = "sesame") -> ServerConfig:
    """
    Rules with an C{--auth-token-file} holding C{token}.
    """
    descriptor, path = tempfile.mkstemp(prefix="streamd-token-")
    case.addCleanup(os.remove, path)
    with os.fdopen(descriptor, "w") as f:
        f.write(token)
    return ServerConfig(access=AccessPolicy(auth=TokenFile(path)))


def serverFrames(data: bytes) -> list[tuple[int, bytes]]:
    """
    The (opcode, payload) of every unmasked frame in C{data}.

    @raise ValueError: if C{data} ends inside a frame.
    """
    frames = []
    offset = 0
    while offset < len(data):
        opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
        offset += 2
        if length == 126:
            (length,) = unpack_from(">H", data, offset)
            offset += 2
        elif length == 127:
            (length,) = unpack_from(">Q", data, offset)
            offset += 8
        if offset + length > len(data):
            raise ValueError(f"a frame of {length} bytes cut after {len(data) - offset}")
        frames.append((opcode, data[offset : offset + length]))
        offset += length
    return frames


def controls(frames: list[tuple[int, bytes]]) -> list[dict[str, Any]]:
    """
    The control messages among C{frames}.
    """
    return [json.loads(payload[1:]) for opcode, payload in frames if opcode == 1 and payload[:1] == b"\x1e"]


def events(text: str) -> list[dict[str, str]]:
    """
    The events of a Server-Sent Events stream (fields joined as a browser
    does: C{data} lines with line feeds), comments and C{retry} left out.
    """
    parsed = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        data = []
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "data":
                data.append(value)
            else:
                fields[name] = value
        if data:
            fields["data"] = "\n".join(data)
            parsed.append(fields)
    return parsed


def cancelBatchedTimers() -> None:
    """
    Cancel the timers autobahn left on the global reactor.  It schedules
    its ping and close-handshake timeouts through txaio's batched timers,
    which outlive the connections that set them; trial would call them a
    dirty reactor in whichever test runs next.
    """
    from twisted.internet import reactor

    for call in reactor.getDelayedCalls():  # type: ignore[attr-defined]
        if getattr(call.func, "__qualname__", "") == "_BatchedTimer._notify_bucket":
            call.cancel()
