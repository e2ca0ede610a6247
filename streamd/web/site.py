"""
The C{--http} site: the page, the two kinds of subscriber, and the
daemon's figures under one root.

=============  ==========================================================
C{/}           the live page (static files shipped in the package)
C{/ws}         WebSocket subscribers (L{streamd.web.websocket})
C{/events}     Server-Sent Events subscribers (L{streamd.web.sse})
C{/streams}    the streams, and publishing (L{streamd.web.streams})
C{/metrics}    Prometheus metrics (L{streamd.web.metrics})
C{/connz}      connections as JSON (L{streamd.web.connz})
C{/healthz}    health (L{streamd.web.healthz})
=============  ==========================================================
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.web.http import combinedLogFormatter
from twisted.web.iweb import IAccessLogFormatter
from twisted.web.server import Request
from twisted.web.static import File
from zope.interface import provider

from streamd.web.channel import StreamdSite
from streamd.web.connz import ConnzResource
from streamd.web.context import WebContext
from streamd.web.healthz import HealthResource
from streamd.web.metrics import MetricsResource
from streamd.web.sse import EventsResource
from streamd.web.streams import StreamsResource
from streamd.web.websocket import StreamWebSocketFactory, StreamWebSocketResource

STATIC = os.path.join(os.path.dirname(__file__), "static")


def makeSite(
    context: WebContext,
    listeners: Callable[[], Sequence[Any]] = tuple,
    sources: Iterable[Any] = (),
    cluster: Callable[[], dict[str, Any] | None] = lambda: None,
) -> StreamdSite:
    """
    The site of one C{--http} listener.

    @param listeners: every listener service of the daemon, for C{/healthz}.
    """
    root = _StaticFiles(STATIC)
    root.putChild(b"ws", StreamWebSocketResource(StreamWebSocketFactory(context)))
    root.putChild(b"events", EventsResource(context))
    root.putChild(b"streams", StreamsResource(context))
    root.putChild(b"metrics", MetricsResource(context, sources, cluster))
    root.putChild(b"connz", ConnzResource(context))
    root.putChild(b"healthz", HealthResource(context.clock, listeners, cluster))
    site = StreamdSite(root, context, logFormatter=withoutTokens)
    site.noisy = False
    site.displayTracebacks = False
    return site


class _StaticFiles(File):
    """
    The page's files.  A path segment that is not UTF-8, or holds a NUL,
    names none of them: 404, without the traceback twisted.web's C{File}
    logs for it (or the 500 it answers), which any client could fill the
    log with.
    """

    def getChild(self, path: bytes, request: Request) -> Any:
        try:
            path.decode("utf-8")
        except UnicodeDecodeError:
            return self.childNotFound
        if b"\0" in path:
            return self.childNotFound
        return super().getChild(path, request)


_QUERY_ITEM = re.compile(rb"[^&;]+")


@provider(IAccessLogFormatter)
def withoutTokens(timestamp: str, request: Request) -> str:
    """
    twisted.web's combined access log line, with the value of every
    C{token} parameter in the URL and the referrer replaced by C{***}:
    C{/events} takes a token in its URL, and the page passes one on in its
    own.
    """
    return combinedLogFormatter(timestamp, _Redacted(request))  # type: ignore[no-any-return]


def redactTokens(url: bytes) -> bytes:
    """
    C{url} with the value of each query parameter whose name, decoded as
    twisted.web decodes it (C{%74oken}) and in any case (C{TOKEN}), is
    C{token} replaced by C{***}.
    """
    path, question, query = url.partition(b"?")
    if not question:
        return url
    # All of it: twisted.web takes a "#" in a request's query as a byte.
    return path + question + _QUERY_ITEM.sub(_redactItem, query)


def _redactItem(item: re.Match[bytes]) -> bytes:
    name, equals, _ = item.group().partition(b"=")
    if equals and unquote_to_bytes(name.replace(b"+", b" ")).strip().lower() == b"token":
        return name + b"=***"
    return item.group()


class _Redacted:
    """
    A request as the access log sees it: its tokens hidden.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self.uri = redactTokens(request.uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)

    def getHeader(self, name: bytes) -> bytes | None:
        value = self._request.getHeader(name)
        if value is not None and name.lower() == b"referer":
            return redactTokens(value)
        return value
