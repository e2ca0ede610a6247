"""
C{/healthz}: 200 while every listener listens and the reactor turns; a
cluster node also says how its link to NATS is (C{cluster}), which does not
change the code: the node still serves its own clients.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request


class HealthResource(Resource):
    """
    C{/healthz}.  The answer is written from a timed call, on a later turn
    of the reactor than the request's, so an answer at all says the reactor
    turns; C{lag} is how late that call ran, in seconds.

    @param listeners: returns every listener service (each with a C{port}
        while it listens, and a C{description}).
    @param cluster: returns the cluster link's state (a JSON object), or
        C{None} on a single node.
    """

    isLeaf = True

    def __init__(
        self,
        clock: IReactorTime,
        listeners: Callable[[], Sequence[Any]],
        cluster: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        super().__init__()
        self.clock = clock
        self.listeners = listeners
        self.cluster = cluster

    def render_GET(self, request: Request) -> Any:
        call = self.clock.callLater(0, self._answer, request, self.clock.seconds())
        request.notifyFinish().addErrback(lambda _: call.cancel())
        return NOT_DONE_YET

    def _answer(self, request: Request, asked: float) -> None:
        down = [listener.description for listener in self.listeners() if listener.port is None]
        request.setResponseCode(503 if down else 200)
        request.setHeader("Content-Type", "application/json")
        request.setHeader("Cache-Control", "no-cache")
        body: dict[str, Any] = {"ok": not down, "down": down, "lag": round(self.clock.seconds() - asked, 6)}
        cluster = self.cluster()
        if cluster is not None:
            body["cluster"] = cluster
        request.write(json.dumps(body).encode())
        request.finish()
