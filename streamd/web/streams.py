"""
C{/streams}: the daemon's streams, listed (C{GET /streams}), one at a time
(C{GET /streams/NAME}), and published to (C{POST /streams/NAME}, see
L{streamd.web.publish}).

C{GET /streams} answers at most L{MAX_LIMIT} streams however many the
daemon holds: those whose name matches C{?match=PATTERN} and begins with
C{?prefix=TEXT}, ordered by C{?sort=} (C{name}, the default, or largest
first C{subscribers}, C{rate}, C{bytes}), the first C{?limit=} of them
(L{DEFAULT_LIMIT} by default); a request costs one look at each stream.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from streamd.fanout.hub import Hub
from streamd.names import BadName, checkPattern, matches
from streamd.web.context import WebContext
from streamd.web.guard import refused
from streamd.web.parse import BadInput, decimal
from streamd.web.publish import HTTPPublisher

DEFAULT_LIMIT = 100

MAX_LIMIT = 1000
"""
The most streams one answer lists.
"""

SORTS: dict[str, Callable[[Hub], Any]] = {
    "name": lambda hub: hub.name,
    "subscribers": lambda hub: len(hub.subscribers),
    "rate": lambda hub: hub.rate(),
    "bytes": lambda hub: hub.history.size,
}
"""
The orders of C{GET /streams}: by name, or largest first by the others.
"""


class StreamsResource(Resource):
    """
    C{/streams} and C{/streams/NAME}.
    """

    isLeaf = True

    def __init__(self, context: WebContext) -> None:
        super().__init__()
        self.context = context

    def render_GET(self, request: Request) -> bytes:
        refusal = refused(self.context, request)
        if refusal is not None:
            return refusal
        name = _name(request)
        if name is None:
            return self._list(request)
        streams = self.context.streams
        hub = None if streams is None else streams.get(name)
        if hub is None:
            return _text(request, 404, f"no stream {name!r}\n")
        return _json(request, hub.figures())

    def render_POST(self, request: Request) -> bytes:
        name = _name(request)
        if name is None:
            return _text(request, 405, "publish to a stream: POST /streams/NAME\n")
        return HTTPPublisher(self.context, request).answer(name)

    def _list(self, request: Request) -> bytes:
        sort = _argument(request, b"sort") or "name"
        limit = _argument(request, b"limit") or str(DEFAULT_LIMIT)
        prefix = _argument(request, b"prefix") or ""
        pattern = _argument(request, b"match")
        try:
            if pattern is not None:
                checkPattern(pattern)
        except BadName as e:
            return _text(request, 400, f"match: {e}\n")
        if sort not in SORTS:
            return _text(request, 400, f"sort must be one of {', '.join(SORTS)}\n")
        try:
            count = decimal(limit, "limit")
        except BadInput as e:
            return _text(request, 400, f"{e}\n")
        streams = list(self.context.streams or ())
        hubs = [
            hub
            for hub in streams
            if hub.name.startswith(prefix) and (pattern is None or matches(pattern, hub.name))
        ]
        pick = heapq.nsmallest if sort == "name" else heapq.nlargest
        chosen = pick(min(count, MAX_LIMIT), hubs, key=SORTS[sort])
        body = {"total": len(streams), "matched": len(hubs), "streams": [hub.figures() for hub in chosen]}
        return _json(request, body)


def _name(request: Request) -> str | None:
    """
    The stream a request of C{/streams/NAME} names, if it names one.
    """
    path = b"/".join(request.postpath or ())
    return path.decode("utf-8", "replace") if path else None


def _argument(request: Request, name: bytes) -> str | None:
    values = (request.args or {}).get(name)
    return values[0].decode("utf-8", "replace") if values else None


def _json(request: Request, body: dict[str, Any]) -> bytes:
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-cache")
    return json.dumps(body).encode()


def _text(request: Request, status: int, text: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    return text.encode()
