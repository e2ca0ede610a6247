"""
C{/connz}: every connection as JSON, like nats-server's: who, through which
listener, since when, what it sent and got, and how far behind it is (in
all its streams, for a client of several).

C{?sort=} one of L{SORTS} (largest first, except C{since} and C{peer}),
C{?limit=} how many (default L{DEFAULT_LIMIT}, at most L{MAX_LIMIT}).

A request costs a bounded amount however many connections there are: the
first L{MAX_LIMIT} of each order are picked by one figure each, before any
row is built, and the rows are kept for L{SNAPSHOT_SECONDS}, so that pollers
share them.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from streamd.fanout.cursor import Cursor
from streamd.fanout.hub import Hub
from streamd.session import Session
from streamd.web.context import WebContext
from streamd.web.guard import refused
from streamd.web.parse import BadInput, decimal

DEFAULT_LIMIT = 100

MAX_LIMIT = 1000
"""
The most connections one answer lists.
"""

SNAPSHOT_SECONDS = 1.0
"""
How long the rows of one order are answered again before they are made
anew.
"""

SORTS = ("lag", "since", "peer", "messages_in", "bytes_in", "messages_out", "bytes_out")
_ASCENDING = ("since", "peer")


def _cursors(session: Session) -> list[Cursor]:
    """
    The cursors of C{session}: its stream's, or those of each of its
    streams.
    """
    if session.subscriptions is not None:
        return list(session.subscriptions.cursors.values())
    return [] if session.cursor is None else [session.cursor]


_KEYS: dict[str, Callable[[Session], Any]] = {
    "lag": lambda session: sum(cursor.behind for cursor in _cursors(session)),
    "since": lambda session: session.since,
    "peer": lambda session: session.peer,
    "messages_in": lambda session: session.messagesIn,
    "bytes_in": lambda session: session.bytesIn,
    "messages_out": lambda session: session.messagesOut,
    "bytes_out": lambda session: session.bytesOut,
}


class ConnzResource(Resource):
    """
    C{/connz}.
    """

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context
        self._snapshots: dict[str, tuple[float, int, list[dict[str, Any]]]] = {}

    def row(self, session: Session) -> dict[str, Any]:
        """
        One connection's figures.
        """
        cursors = _cursors(session)
        row = {name: figure(session) for name, figure in _KEYS.items()}
        row["listener"] = session.context.listener
        row["protocol"] = session.adapter.protocol
        row["keeping_up"] = bool(cursors) and all(_keepsUp(cursor) for cursor in cursors)
        return row

    def render_GET(self, request: Request) -> bytes:
        refusal = refused(self.context, request)
        if refusal is not None:
            return refusal
        sort = _argument(request, b"sort", "lag")
        limit = _argument(request, b"limit", str(DEFAULT_LIMIT))
        try:
            if sort not in SORTS:
                raise BadInput(f"sort must be one of {', '.join(SORTS)}")
            count = decimal(limit, "limit")
        except BadInput as e:
            request.setResponseCode(400)
            request.setHeader("Content-Type", "text/plain; charset=utf-8")
            return f"{e}\n".encode()
        _, total, rows = self.snapshot(sort)
        body = {
            "now": self.context.clock.seconds(),
            "epoch": self.context.epoch,
            "total": total,
            "stats": self.context.hub.stats.figures(),
            "connections": rows[:count],
        }
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-cache")
        return json.dumps(body).encode()

    def snapshot(self, sort: str) -> tuple[float, int, list[dict[str, Any]]]:
        """
        When the rows of order C{sort} were made, how many connections there
        were, and the first L{MAX_LIMIT} rows: made anew once they are
        L{SNAPSHOT_SECONDS} old.
        """
        now = self.context.clock.seconds()
        snapshot = self._snapshots.get(sort)
        if snapshot is None or now - snapshot[0] >= SNAPSHOT_SECONDS:
            sessions = list(self.context.connections)
            pick = heapq.nsmallest if sort in _ASCENDING else heapq.nlargest
            rows = [self.row(session) for session in pick(MAX_LIMIT, sessions, key=_KEYS[sort])]
            snapshot = self._snapshots[sort] = (now, len(sessions), rows)
        return snapshot


def _keepsUp(cursor: Cursor) -> bool:
    hub: Hub = cursor.hub  # type: ignore[assignment]
    return hub.keepsUp(cursor)


def _argument(request: Request, name: bytes, default: str) -> str:
    values = request.args.get(name)
    return values[0].decode("ascii", "replace") if values else default
