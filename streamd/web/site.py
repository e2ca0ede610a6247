"""
The C{--http} site: the page, the two kinds of subscriber, and the
daemon's figures under one root.

=============  ==========================================================
C{/}           the live page (static files shipped in the package)
C{/ws}         WebSocket subscribers (L{streamd.web.websocket})
C{/events}     Server-Sent Events subscribers (L{streamd.web.sse})
C{/metrics}    Prometheus metrics (L{streamd.web.metrics})
C{/connz}      connections as JSON (L{streamd.web.connz})
C{/healthz}    health (L{streamd.web.healthz})
=============  ==========================================================
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from twisted.web.server import Site
from twisted.web.static import File

from streamd.web.connz import ConnzResource
from streamd.web.context import WebContext
from streamd.web.healthz import HealthResource
from streamd.web.metrics import MetricsResource
from streamd.web.sse import EventsResource
from streamd.web.websocket import StreamWebSocketFactory

STATIC = os.path.join(os.path.dirname(__file__), "static")


def makeSite(
    context: WebContext,
    listeners: Callable[[], Sequence[Any]] = tuple,
    sources: Iterable[Any] = (),
    cluster: Callable[[], dict[str, Any] | None] = lambda: None,
) -> Site:
    """
    The site of one C{--http} listener.

    @param listeners: every listener service of the daemon, for C{/healthz}.
    """
    root = File(STATIC)
    root.putChild(b"ws", WebSocketResource(StreamWebSocketFactory(context)))
    root.putChild(b"events", EventsResource(context))
    root.putChild(b"metrics", MetricsResource(context, sources))
    root.putChild(b"connz", ConnzResource(context))
    root.putChild(b"healthz", HealthResource(context.clock, listeners, cluster))
    site = Site(root, reactor=context.clock)
    site.noisy = False
    site.displayTracebacks = False
    return site

