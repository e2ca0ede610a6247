"""
C{/connz}: every connection as JSON, like nats-server's: who, through which
listener, since when, what it sent and got, and how far behind it is.

C{?sort=} one of L{SORTS} (largest first, except C{since} and C{peer}),
C{?limit=} how many (default L{DEFAULT_LIMIT}).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from streamd.web.context import WebContext
from streamd.web.guard import refused
from streamd.web.metrics import connectionKind

DEFAULT_LIMIT = 100

SORTS = ("lag", "since", "peer", "messages_in", "bytes_in", "messages_out", "bytes_out")
_ASCENDING = ("since", "peer")


class ConnzResource(Resource):
    """
    C{/connz}.

    @param listenerOf: the C{--listen}/C{--http} description a connection
        came through.
    """

    isLeaf = True

    def __init__(self, context: WebContext, listenerOf: Callable[[Any], str]) -> None:
        super().__init__()
        self.context = context
        self.listenerOf = listenerOf

    def row(self, connection: Any) -> dict[str, Any]:
        """
        One connection's figures.
        """
        cursor = connection.cursor
        hub = self.context.hub
        live = cursor is not None and cursor.live
        drained = cursor.lastDrain if cursor is not None else None
        keepingUp = live or (drained is not None and drained >= hub.clock.seconds() - hub.flow.stallTimeout)
        kind = connectionKind(connection)
        return {
            "peer": connection.peer,
            "listener": self.listenerOf(connection),
            "protocol": connection.framing.name if kind == "tcp" else kind,
            "since": connection.since,
            "messages_in": connection.messagesIn,
            "bytes_in": connection.bytesIn,
            "messages_out": connection.messagesOut,
            "bytes_out": cursor.written if cursor is not None else 0,
            "lag": cursor.behind if cursor is not None else 0,
            "keeping_up": keepingUp,
        }

    def render_GET(self, request: Request) -> bytes:
        refusal = refused(self.context, request)
        if refusal is not None:
            return refusal
        sort = _argument(request, b"sort", "lag")
        limit = _argument(request, b"limit", str(DEFAULT_LIMIT))
        if sort not in SORTS or not limit.isdigit():
            request.setResponseCode(400)
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            return f"sort must be one of {', '.join(SORTS)}; limit a number\n".encode()
        rows = [self.row(c) for c in self.context.connections]
        rows.sort(key=lambda row: row[sort], reverse=sort not in _ASCENDING)
        body = {
            "now": self.context.clock.seconds(),
            "epoch": self.context.epoch,
            "total": len(rows),
            "stats": asdict(self.context.hub.stats),
            "connections": rows[: int(limit)],
        }
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-cache")
        return json.dumps(body).encode()


def _argument(request: Request, name: bytes, default: str) -> str:
    values = request.args.get(name)
    return values[0].decode("ascii", "replace") if values else default
