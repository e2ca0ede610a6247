"""
C{/connz}: every connection as JSON, like nats-server's: who, through which
listener, since when, what it sent and got, and how far behind it is.

C{?sort=} one of L{SORTS} (largest first, except C{since} and C{peer}),
C{?limit=} how many (default L{DEFAULT_LIMIT}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from streamd.session import Session
from streamd.web.context import WebContext
from streamd.web.guard import refused

DEFAULT_LIMIT = 100

SORTS = ("lag", "since", "peer", "messages_in", "bytes_in", "messages_out", "bytes_out")
_ASCENDING = ("since", "peer")


class ConnzResource(Resource):
    """
    C{/connz}.
    """

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context

    def row(self, session: Session) -> dict[str, Any]:
        """
        One connection's figures.
        """
        cursor = session.cursor
        return {
            "peer": session.peer,
            "listener": session.context.listener,
            "protocol": session.adapter.protocol,
            "since": session.since,
            "messages_in": session.messagesIn,
            "bytes_in": session.bytesIn,
            "messages_out": session.messagesOut,
            "bytes_out": session.bytesOut,
            "lag": cursor.behind if cursor is not None else 0,
            "keeping_up": cursor is not None and self.context.hub.keepsUp(cursor),
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
            "stats": self.context.hub.stats.figures(),
            "connections": rows[: int(limit)],
        }
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-cache")
        return json.dumps(body).encode()


def _argument(request: Request, name: bytes, default: str) -> str:
    values = request.args.get(name)
    return values[0].decode("ascii", "replace") if values else default
