"""
Tests for C{GET /streams} and C{GET /streams/NAME}
(L{streamd.web.streams}): each stream's figures, bounded, filtered and
ordered, under the rule of C{/connz}.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from streamd.web.context import WebContext
from streamd.web.streams import MAX_LIMIT

from .webtools import SiteConnection, cancelBatchedTimers, tokenConfig, webContext


def get(context: WebContext, path: str, headers: str = "") -> tuple[int, Any]:
    """
    The status of C{GET path}, and its body (parsed, if JSON).
    """
    connection = SiteConnection(context)
    connection.send(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{headers}\r\n".encode())
    body = connection.body()
    if b"application/json" in connection.transport.value().partition(b"\r\n\r\n")[0]:
        return connection.status(), json.loads(body)
    return connection.status(), body


class StreamsTests(SynchronousTestCase):
    """
    The streams, as JSON.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)
        self.context = webContext()
        self.streams = self.context.streams
        assert self.streams is not None

    def test_oneStream(self) -> None:
        """
        C{/streams/NAME} is the stream's figures: its subscribers, rate,
        epoch and the span of its history; a stream that does not exist is
        a 404, and asking is no reason to make it.
        """
        hub = self.streams.open("prices.eu")
        hub.publish([b"1", b"2"])
        self.context.clock.advance(2)
        hub.publish([b"3"])
        status, figures = get(self.context, "/streams/prices.eu")
        self.assertEqual(status, 200)
        self.assertEqual(
            figures,
            {
                "name": "prices.eu",
                "subscribers": 0,
                "rate": 1.5,
                "epoch": hub.history.epoch.hex(),
                "oldest": 1,
                "newest": 3,
                "history_bytes": 15,
            },
        )
        self.assertEqual(get(self.context, "/streams/nope")[0], 404)
        self.assertIsNone(self.streams.get("nope"))

    def test_list(self) -> None:
        """
        C{/streams} lists the streams by name, with how many there are and
        how many matched.
        """
        for name in ("b", "a", "c.x"):
            self.streams.open(name)
        status, body = get(self.context, "/streams")
        self.assertEqual(status, 200)
        self.assertEqual([s["name"] for s in body["streams"]], ["a", "b", "c.x", "default"])
        self.assertEqual((body["total"], body["matched"]), (4, 4))

    def test_filteredAndOrdered(self) -> None:
        """
        C{?match=PATTERN} and C{?prefix=} choose the streams; C{?sort=}
        orders them, largest first but by name; C{?limit=} keeps the first.
        """
        busy, quiet = self.streams.open("logs.web"), self.streams.open("logs.db")
        self.streams.open("prices")
        busy.publish([b"x" * 50])
        quiet.publish([b"y"])
        _, body = get(self.context, "/streams?match=logs.*&sort=bytes&limit=1")
        self.assertEqual([s["name"] for s in body["streams"]], ["logs.web"])
        self.assertEqual((body["total"], body["matched"]), (4, 2))
        _, body = get(self.context, "/streams?prefix=log&sort=name")
        self.assertEqual([s["name"] for s in body["streams"]], ["logs.db", "logs.web"])
        for sort in ("subscribers", "rate"):
            self.assertEqual(get(self.context, f"/streams?sort={sort}")[0], 200)

    def test_bounded(self) -> None:
        """
        However many streams there are, an answer lists at most
        L{MAX_LIMIT}, 100 unless asked.
        """
        for n in range(MAX_LIMIT + 10):
            self.streams.open(f"s{n:05d}")
        _, body = get(self.context, "/streams")
        self.assertEqual(len(body["streams"]), 100)
        _, body = get(self.context, f"/streams?limit={MAX_LIMIT * 10}")
        self.assertEqual((len(body["streams"]), body["matched"]), (MAX_LIMIT, MAX_LIMIT + 11))

    def test_badQueries(self) -> None:
        """
        An unknown order, a limit that is not a number, a pattern that is
        not one: 400.
        """
        for query in ("sort=random", "limit=many", "match=a..b", "limit=%C2%B2", "limit=" + "9" * 5000):
            self.assertEqual(get(self.context, f"/streams?{query}")[0], 400, query)

    def test_token(self) -> None:
        """
        With C{--auth-token-file}, the streams are the figures' (C{/connz}):
        the token in the header, unless C{--http-public-metrics}.
        """
        self.context = webContext(tokenConfig(self))
        self.assertEqual(get(self.context, "/streams")[0], 401)
        self.assertEqual(get(self.context, "/streams/default?token=sesame")[0], 401)
        self.assertEqual(get(self.context, "/streams", "Authorization: Bearer sesame\r\n")[0], 200)
        self.context = webContext(tokenConfig(self), publicMetrics=True)
        self.assertEqual(get(self.context, "/streams/default")[0], 200)

    def test_tokenNotUtf8(self) -> None:
        """
        A token that is not UTF-8 is a token like any other: a wrong one,
        at C{/streams}, C{/connz} and C{/metrics}; one that
        C{--http-public-metrics} does not need is ignored.
        """
        self.context = webContext(tokenConfig(self))
        for path in (b"/streams", b"/connz", b"/metrics"):
            connection = SiteConnection(self.context)
            connection.send(b"GET %s HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xff\r\n\r\n" % path)
            self.assertEqual(connection.status(), 401, path)
        self.context = webContext(tokenConfig(self), publicMetrics=True)
        connection = SiteConnection(self.context)
        connection.send(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xff\r\n\r\n")
        self.assertEqual(connection.status(), 200)

    def test_postWithoutName(self) -> None:
        """
        C{POST /streams} names no stream: 405.
        """
        connection = SiteConnection(self.context)
        connection.send(b"POST /streams HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.assertEqual(connection.status(), 405)
