"""
Tests for L{streamd.web.connz}: C{/connz} costs a bounded amount per
request, however many connections there are and however often it is asked.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from streamd.config import FlowControl
from streamd.web import connz
from streamd.web.connz import ConnzResource
from streamd.web.context import WebContext

from .sessionclients import Daemon, FramedClient, WebSocketStreamsClient


class ConnzTests(SynchronousTestCase):
    """
    C{/connz} over many connections.
    """

    def setUp(self) -> None:
        self.daemon = Daemon()
        self.clients = [FramedClient(self.daemon) for _ in range(50)]
        context = WebContext(
            self.daemon.hub,
            self.daemon.clock,
            self.daemon.config,
            self.daemon.connections,
            publicMetrics=True,
        )
        self.resource = ConnzResource(context)
        self.built = 0
        row = self.resource.row

        def counted(session: Any) -> Any:
            self.built += 1
            return row(session)

        self.resource.row = counted  # type: ignore[method-assign]

    def get(self, **args: str) -> Any:
        request = DummyRequest([b"connz"])
        request.args = {name.encode(): [value.encode()] for name, value in args.items()}
        return json.loads(self.resource.render_GET(request))

    def test_bounded(self) -> None:
        """
        A request builds at most L{connz.MAX_LIMIT} rows, picked by one figure
        each, whatever its C{?limit=}; the total still counts every
        connection, and the first rows are the right ones.
        """
        self.patch(connz, "MAX_LIMIT", 10)
        for n, client in enumerate(self.clients):
            client.publish(b"x" * n)
        answer = self.get(sort="bytes_in", limit="1000")
        self.assertEqual(self.built, 10)
        self.assertEqual(answer["total"], 50)
        # Each sent n bytes and a 4-byte header.
        self.assertEqual(
            [row["bytes_in"] for row in answer["connections"]], [4 + n for n in range(49, 39, -1)]
        )

    def test_badLimit(self) -> None:
        """
        A limit that is not a number of ASCII digits, or of more than 20,
        is a 400 saying so.
        """
        for limit in ("\u00b2", "9" * 5000):
            request = DummyRequest([b"connz"])
            request.args = {b"limit": [limit.encode()]}
            body = self.resource.render_GET(request)
            self.assertEqual(request.responseCode, 400)
            self.assertIn(b"which is not a number of at most 20 digits", body)

    def test_shared(self) -> None:
        """
        Requests within L{connz.SNAPSHOT_SECONDS} of each other are answered
        from the same rows: two pollers cost one build a second.
        """
        for _ in range(20):
            self.get()
        self.assertEqual(self.built, 50)
        self.daemon.clock.advance(connz.SNAPSHOT_SECONDS)
        answer = self.get(limit="5")
        self.assertEqual(self.built, 100)
        self.assertEqual(len(answer["connections"]), 5)


class SeveralStreamsTests(SynchronousTestCase):
    """
    A client of several streams in C{/connz}.
    """

    def test_lagOverItsStreams(self) -> None:
        """
        Its lag is what it is behind by in all its streams together; it
        keeps up while it keeps up in each.
        """
        daemon = Daemon()
        client = WebSocketStreamsClient(daemon)
        context = WebContext(daemon.hub, daemon.clock, daemon.config, daemon.connections)
        resource = ConnzResource(context)
        assert client.session is not None
        client.session.subscribe("other")
        other = daemon.streams.open("other")
        self.assertTrue(resource.row(client.session)["keeping_up"])
        client.pause()
        daemon.publish(b"x" * 1000)
        other.publish([b"y" * 500])
        row = resource.row(client.session)
        self.assertEqual(row["lag"], daemon.hub.history.size + other.history.size)
        daemon.clock.advance(FlowControl.stallTimeout + 1)
        self.assertFalse(resource.row(client.session)["keeping_up"])
