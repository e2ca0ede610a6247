"""
The web's named streams under a real C{twistd -n streamd} process, on
loopback sockets: a WebSocket client of C{/ws/NAME}, an event stream of
C{/events/PATTERN} resumed with C{Last-Event-ID}, C{POST /streams/NAME}
and C{GET /streams}, with tokens and declared streams.
"""

from __future__ import annotations

import json
import re
from io import BytesIO
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from streamd.framing import INT32
from tests.support import spawnTwistd, waitFor
from tests.webtools import cancelBatchedTimers, tokenConfig

from .test_web_integration import _Mixin, openWebSocket

LOCAL = "tcp:0:interface=127.0.0.1"


class _Daemon:
    """
    A C{twistd streamd} process with a TCP and an C{--http} listener, and
    an HTTP client of it.
    """

    timeout = 60
    addCleanup: Any

    @inlineCallbacks
    def daemon(self, *argv: str) -> Any:
        """
        Start the daemon with C{argv}; fires once both its listeners listen,
        with the C{--http} one's port.
        """
        self.addCleanup(cancelBatchedTimers)
        self.process = spawnTwistd(self, "--port", "0", "--source", "none", "--http", LOCAL, *argv)
        yield waitFor(lambda: self.process.output.count(b"streamd listening on") == 2, 30)
        ports = re.findall(rb"streamd listening on 127\.0\.0\.1:(\d+)", self.process.output)
        self.port = int(ports[1])
        return self.port

    @inlineCallbacks
    def request(
        self,
        method: bytes,
        path: str,
        body: bytes | None = None,
        headers: dict[bytes, list[bytes]] | None = None,
    ) -> Any:
        """
        The status and body of C{method path}.
        """
        producer = None if body is None else FileBodyProducer(BytesIO(body))
        response = yield Agent(reactor).request(
            method, f"http://127.0.0.1:{self.port}{path}".encode(), Headers(headers or {}), producer
        )
        answered = yield readBody(response)
        return response.code, answered

    eventStream = _Mixin.eventStream


def labelled(received: list[tuple[bool, bytes]]) -> list[tuple[str, int, bytes]]:
    """
    The stream messages a WebSocket client of several streams received,
    each with its stream and number (from the C{in} control before it).
    """
    read = []
    stream, seq = "", 0
    for isBinary, payload in received:
        if not isBinary and payload.startswith(b"\x1e"):
            control = json.loads(payload[1:])
            if control["type"] == "in":
                stream, seq = control["stream"], control["first"]
        else:
            read.append((stream, seq, payload))
            seq += 1
    return read


class OpenDaemonTests(_Daemon, TestCase):
    """
    A daemon without tokens.
    """

    @inlineCallbacks
    def test_webSocketOfAStream(self) -> None:
        """
        A WebSocket client of C{/ws/prices.eu} gets what is published
        there over HTTP, labelled, and not what goes to another stream;
        what it sends goes to its stream.
        """
        yield self.daemon()
        client = yield openWebSocket(self, self.port, "/prices.eu")
        other = yield openWebSocket(self, self.port, "/prices.eu")
        code, _ = yield self.request(b"POST", "/streams/logs", b"elsewhere")
        self.assertEqual(code, 200)
        code, body = yield self.request(b"POST", "/streams/prices.eu", b"bund 101.2")
        self.assertEqual((code, json.loads(body)), (200, {"stream": "prices.eu", "first": 1, "last": 1}))
        client.client.sendMessage(b"from a client")
        yield waitFor(lambda: len(labelled(other.received)) == 2)
        self.assertEqual(
            labelled(other.received), [("prices.eu", 1, b"bund 101.2"), ("prices.eu", 2, b"from a client")]
        )
        self.assertEqual(labelled(client.received), [("prices.eu", 1, b"bund 101.2")])

    @inlineCallbacks
    def test_eventsOfAPattern(self) -> None:
        """
        An event stream of C{/events/sensors.*} gets both streams' events,
        ids naming their stream; dropped and resumed with the last id (as a
        browser does), it gets that stream from there and the other from
        its oldest message.
        """
        yield self.daemon()
        live = yield self.eventStream(b"GET /events/sensors.* HTTP/1.0\r\n\r\n")
        int32 = {b"Content-Type": [b"application/x-streamd-int32"]}
        yield self.request(b"POST", "/streams/sensors.a", INT32.encodeMany([b"a1", b"a2"]), int32)
        yield self.request(b"POST", "/streams/sensors.b", b"b1")
        yield waitFor(lambda: len([e for e in live.events() if "id" in e]) == 3)
        got = [
            (e["id"].split("/")[0], e["id"].rpartition("-")[2], e["data"]) for e in live.events() if "id" in e
        ]
        self.assertEqual(got, [("sensors.a", "1", "a1"), ("sensors.a", "2", "a2"), ("sensors.b", "1", "b1")])
        lastA = [e["id"] for e in live.events() if e.get("id", "").startswith("sensors.a/")][0]
        resumed = yield self.eventStream(
            b"GET /events/sensors.* HTTP/1.0\r\nLast-Event-ID: %s\r\n\r\n" % lastA.encode()
        )
        yield waitFor(lambda: len([e for e in resumed.events() if "id" in e]) == 2)
        self.assertEqual([e["data"] for e in resumed.events() if "id" in e], ["a2", "b1"])

    @inlineCallbacks
    def test_listStreams(self) -> None:
        """
        C{GET /streams} lists the streams with their subscribers and
        history; C{GET /streams/NAME} one of them; 404 for none.
        """
        yield self.daemon()
        yield openWebSocket(self, self.port, "/watched")
        yield self.request(b"POST", "/streams/watched", b"x")
        code, body = yield self.request(b"GET", "/streams?match=watched")
        self.assertEqual(code, 200)
        (watched,) = json.loads(body)["streams"]
        self.assertEqual((watched["subscribers"], watched["oldest"], watched["newest"]), (1, 1, 1))
        code, body = yield self.request(b"GET", "/streams/watched")
        self.assertEqual((code, json.loads(body)["name"]), (200, "watched"))
        code, _ = yield self.request(b"GET", "/streams/unwatched")
        self.assertEqual(code, 404)


class RulesTests(_Daemon, TestCase):
    """
    A daemon with tokens, and one with declared streams only.
    """

    @inlineCallbacks
    def test_publishTokens(self) -> None:
        """
        With C{--auth-token-file} and C{--publish-token-file}: no token is
        a 401, the reading one a 403, the publishing one publishes.
        """
        read = tokenConfig(self, "read-secret").access.auth
        publish = tokenConfig(self, "publish-secret").access.auth
        assert read is not None and publish is not None
        yield self.daemon("--auth-token-file", read.path, "--publish-token-file", publish.path)
        bearer = lambda token: {b"Authorization": [b"Bearer " + token]}  # noqa: E731
        for headers, status in ((None, 401), (bearer(b"read-secret"), 403), (bearer(b"publish-secret"), 200)):
            code, _ = yield self.request(b"POST", "/streams/s", b"x", headers)
            self.assertEqual(code, status, headers)
        self.assertNotIn(b"secret", self.process.output)

    @inlineCallbacks
    def test_declaredOnly(self) -> None:
        """
        Under C{--streams declared}, a stream not declared is a 404 to
        publish to and to subscribe to; a declared one is served.
        """
        yield self.daemon("--streams", "declared", "--declare", "known")
        code, _ = yield self.request(b"POST", "/streams/unknown", b"x")
        self.assertEqual(code, 404)
        refused = yield self.eventStream(b"GET /events/unknown HTTP/1.0\r\n\r\n")
        yield refused.done
        self.assertTrue(
            refused.data.startswith(b"HTTP/1.0 404 ") or refused.data.startswith(b"HTTP/1.1 404 ")
        )
        code, _ = yield self.request(b"POST", "/streams/known", b"x")
        self.assertEqual(code, 200)
