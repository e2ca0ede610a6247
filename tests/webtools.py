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

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import FlowControl, ServerConfig
from streamd.fanout.hub import Hub
from streamd.session import Connections
from streamd.stats import Stats
from streamd.web.context import WebContext

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


def webContext(
    config: ServerConfig | None = None, flow: FlowControl | None = None, publicMetrics: bool = False
) -> WebContext:
    """
    A context on a fresh hub and L{Clock}.
    """
    clock = Clock()
    hub = Hub(Stats(), clock, flow or FlowControl())
    hub.history.epoch = bytes.fromhex(EPOCH)
    config = config or ServerConfig()
    return WebContext(hub, clock, config, Connections(config.maxPartialBytes, clock), "tcp:0", publicMetrics)


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
