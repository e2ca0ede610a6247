"""
Rights per stream (C{--access-file}) as sessions hold them: what a client
of several streams (C{seq} version 4) and a client of a listener bound to
one stream may read and publish to, before and after SIGHUP.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from streamd.access import AccessFile
from streamd.auth import AccessPolicy, TokenFile
from streamd.config import ServerConfig
from streamd.reasons import Reason

from .sessionclients import (
    ASCII10Client,
    BoundClient,
    Client,
    Daemon,
    EventsClient,
    FramedClient,
    SeqClient,
    SubscriberClient,
    WebSocketClient,
)

READER = b"reader-0a9f"
WRITER = b"writer-31c7"
NEWS = b"news-only-d4e2"
DEFAULT_READER = b"default-6f01"
EVERYTHING = b"auth-file-token-8b"
RULES = b"""\
reader-0a9f read=prices.>,news
writer-31c7 read=news publish=prices.eu
news-only-d4e2 read=news
default-6f01 read=default
"""


class _Rights:
    """
    A daemon with an access file (L{RULES}) beside an C{--auth-token-file}.
    """

    addCleanup: Any

    def setUp(self) -> None:
        descriptor, self.path = tempfile.mkstemp(prefix="streamd-access-")
        self.addCleanup(os.remove, self.path)
        os.close(descriptor)
        self.rewrite(RULES)
        descriptor, authPath = tempfile.mkstemp(prefix="streamd-token-")
        self.addCleanup(os.remove, authPath)
        with os.fdopen(descriptor, "wb") as f:
            f.write(EVERYTHING)
        policy = AccessPolicy(auth=TokenFile(authPath), publish=None, accessFile=AccessFile(self.path))
        self.daemon = Daemon(ServerConfig(heartbeat=None, access=policy))

    def rewrite(self, rules: bytes) -> None:
        with open(self.path, "wb") as f:
            f.write(rules)

    def reload(self) -> None:
        """
        What SIGHUP does.
        """
        self.daemon.config.access.reload()
        self.daemon.connections.reauthorize()

    def publish(self, stream: str, *messages: bytes) -> None:
        self.daemon.streams.open(stream).publish(list(messages))

    def subscriber(self, *subjects: str, token: bytes | None = READER) -> SubscriberClient:
        client = SubscriberClient(self.daemon, subjects, token)
        self.addCleanup(lambda: client.closed or client.lose())
        return client

    def bound(self, stream: str, token: bytes) -> BoundClient:
        client = BoundClient(self.daemon, stream, token)
        self.addCleanup(lambda: client.closed or client.lose())
        return client


class SeveralStreamsTests(_Rights, SynchronousTestCase):
    """
    A client of several streams reads those its token may read, publishes
    to those it may publish to, and is told of each refusal while its
    connection goes on.
    """

    def test_unknownToken(self) -> None:
        """
        A token the access file does not name is refused: C{auth_failed}.
        """
        client = self.subscriber("news", token=b"guess-1234")
        self.publish("news", b"for readers")
        self.assertEqual(client.received(), {})
        self.assertEqual(client.heard().goodbye, Reason.AUTH_FAILED)
        self.assertTrue(client.closed)
        self.assertEqual(self.daemon.stats.disconnects[Reason.AUTH_FAILED], 1)

    def test_noToken(self) -> None:
        """
        With an access file every client must send a token in time, even
        to read.
        """
        client = self.subscriber("news", token=None)
        self.daemon.clock.advance(self.daemon.config.authTimeout)
        self.assertEqual(client.heard().goodbye, Reason.AUTH_TIMEOUT)

    def test_subscriptions(self) -> None:
        """
        A subscription to a stream the token may not read is refused with
        a REFUSED that names it; the others are served.
        """
        client = self.subscriber("default", "prices.eu", "news", "logs.web")
        for stream in ("default", "prices.eu", "news", "logs.web"):
            self.publish(stream, stream.encode())
        self.assertEqual(client.received(), {"prices.eu": [b"prices.eu"], "news": [b"news"]})
        self.assertEqual(
            client.heard().refusals,
            ["default: this client may not read 'default'", "logs.web: this client may not read 'logs.web'"],
        )
        self.assertFalse(client.closed)

    def test_pattern(self) -> None:
        """
        A pattern subscription receives the matching streams the token may
        read, those made after it subscribed too, and silently not the
        others.
        """
        self.publish("prices.eu", b"before")
        client = self.subscriber(">")
        for stream in ("default", "prices.eu", "prices.us", "secrets.x", "news"):
            self.publish(stream, stream.encode())
        self.assertEqual(
            client.received(), {"prices.eu": [b"prices.eu"], "prices.us": [b"prices.us"], "news": [b"news"]}
        )
        self.assertEqual(client.heard().refusals, [])

    def test_publishing(self) -> None:
        """
        A token publishes to the streams it may publish to; a message for
        another stream is refused with a REFUSED, and the connection goes
        on.
        """
        reader = self.subscriber("prices.eu")
        writer = self.subscriber(token=WRITER)
        writer.publishTo("prices.eu", b"bund 101.2")
        writer.publishTo("prices.us", b"not mine")
        writer.publishTo("prices.eu", b"bund 101.3")
        self.assertEqual(reader.received(), {"prices.eu": [b"bund 101.2", b"bund 101.3"]})
        self.assertEqual(writer.heard().refusals, ["prices.us: this client may not publish to 'prices.us'"])
        self.assertFalse(writer.closed)

    def test_refusedMakesNoStream(self) -> None:
        """
        A message for a stream the client may not publish to does not make
        that stream (so no pattern subscriber sees it appear).
        """
        writer = self.subscriber(token=WRITER)
        writer.publishTo("prices.nowhere", b"refused")
        self.assertIsNone(self.daemon.streams.get("prices.nowhere"))

    def test_readerPublishes(self) -> None:
        """
        A token that may only read is cut when it publishes: C{read_only}.
        """
        client = self.subscriber("news")
        client.publishTo("news", b"hello")
        self.assertEqual(client.heard().goodbye, Reason.READ_ONLY)

    def test_tokenFileToken(self) -> None:
        """
        The C{--auth-token-file} token beside the access file reads every
        stream and, with no C{--publish-token-file}, publishes to every
        one.
        """
        client = self.subscriber("default", "logs.>", token=EVERYTHING)
        other = self.subscriber(token=EVERYTHING)
        other.publishTo("logs.web", b"GET /")
        self.publish("default", b"tick")
        self.assertEqual(client.received(), {"logs.web": [b"GET /"], "default": [b"tick"]})

    def test_reload(self) -> None:
        """
        After SIGHUP a publisher whose token lost a stream may no longer
        publish there (at once, REFUSED); what it reads goes on; new
        subscriptions follow the new rules.
        """
        writer = self.subscriber("news", token=WRITER)
        reader = self.subscriber("prices.eu")
        writer.publishTo("prices.eu", b"before")
        self.rewrite(b"writer-31c7 read=news publish=prices.us\nreader-0a9f read=news\n")
        self.reload()
        writer.publishTo("prices.eu", b"after")
        writer.publishTo("prices.us", b"allowed now")
        self.publish("news", b"still read")
        self.publish("prices.eu", b"still read")
        reader.subscribe("prices.us")
        self.assertEqual(reader.received(), {"prices.eu": [b"before", b"still read"]})
        self.assertEqual(reader.heard().refusals, ["prices.us: this client may not read 'prices.us'"])
        self.assertEqual(writer.received(), {"news": [b"still read"]})
        self.assertEqual(writer.heard().refusals, ["prices.eu: this client may not publish to 'prices.eu'"])
        self.assertEqual(self.daemon.streams.open("prices.us").history.nextSequence - 1, 1)

    def test_reloadRemovesToken(self) -> None:
        """
        A token taken out of the file no longer publishes anywhere (its
        next message cuts it, C{read_only}).
        """
        writer = self.subscriber(token=WRITER)
        self.rewrite(b"reader-0a9f read=news\n")
        self.reload()
        writer.publishTo("prices.eu", b"after")
        self.assertEqual(writer.heard().goodbye, Reason.READ_ONLY)
        self.assertEqual(self.daemon.streams.open("prices.eu").history.nextSequence - 1, 0)

    def test_brokenReloadKeepsRules(self) -> None:
        """
        A file that no longer parses leaves every session's rights as they
        were.
        """
        writer = self.subscriber(token=WRITER)
        self.rewrite(b"writer-31c7 read=news publish=\n")
        self.reload()
        reader = self.subscriber("prices.eu")
        writer.publishTo("prices.eu", b"still allowed")
        self.assertEqual(reader.received(), {"prices.eu": [b"still allowed"]})


class BoundListenerTests(_Rights, SynchronousTestCase):
    """
    A listener bound to one stream (C{--listen ...:stream=prices.eu}) holds
    its clients to the same rights.
    """

    def test_mayNotRead(self) -> None:
        """
        A token that may not read the listener's stream is refused:
        C{forbidden}, counted once, nothing sent.
        """
        client = self.bound("prices.eu", NEWS)
        self.publish("prices.eu", b"bund 101.2")
        self.assertEqual(client.heard().messages, [])
        self.assertTrue(client.closed)
        self.assertEqual(self.daemon.stats.disconnects[Reason.FORBIDDEN], 1)

    def test_reads(self) -> None:
        """
        A token that may read the listener's stream receives it.
        """
        client = self.bound("prices.eu", READER)
        self.publish("prices.eu", b"bund 101.2")
        self.assertEqual(client.heard().messages, [b"bund 101.2"])

    def test_publishes(self) -> None:
        """
        A token may publish on a listener of a stream it may publish to
        (which it may then read); on one of a stream it may only read, its
        message cuts it (C{read_only}).
        """
        reader = self.bound("prices.eu", READER)
        writer = self.bound("prices.eu", WRITER)
        writer.publish(b"bund 101.2")
        self.assertEqual(reader.heard().messages, [b"bund 101.2"])
        newsWriter = self.bound("news", WRITER)
        newsWriter.publish(b"not allowed")
        self.assertTrue(newsWriter.closed)
        self.assertEqual(self.daemon.stats.disconnects[Reason.READ_ONLY], 1)


class _ListenerStreamMixin(_Rights):
    """
    On every transport of one stream, a token that may not read the
    listener's stream (C{default}) is refused, and one that may reads it.
    """

    client: type[Client]
    told: Reason | None = Reason.FORBIDDEN
    """
    What the transport says when it refuses.
    """

    def connect(self, token: bytes) -> Client:
        client = self.client(self.daemon, token=token)  # type: ignore[call-arg]
        self.addCleanup(lambda: client.closed or client.lose())
        return client

    def test_forbidden(self) -> None:
        """
        Nothing of the stream, the refusal in the transport's dialect, the
        connection closed, counted once under C{forbidden}.
        """
        client = self.connect(NEWS)
        self.daemon.publish(b"not for news readers")
        heard = client.heard()
        self.assertEqual((heard.messages, heard.goodbye), ([], self.told))
        self.assertTrue(client.closed)
        self.assertEqual(self.daemon.stats.disconnects[Reason.FORBIDDEN], 1)
        self.assertEqual(sum(self.daemon.stats.disconnects.values()), 1)

    def test_reads(self) -> None:
        """
        A token that may read the stream gets it.
        """
        client = self.connect(DEFAULT_READER)
        self.daemon.publish(b"for default readers")
        self.assertEqual(client.heard().messages, [b"for default readers"])


class Int32StreamTests(_ListenerStreamMixin, SynchronousTestCase):
    """
    The rule on an C{int32} listener, which cannot say why it closes.
    """

    client = FramedClient
    told = None


class ASCII10StreamTests(_ListenerStreamMixin, SynchronousTestCase):
    """
    The rule on an C{ascii10} listener, which cannot say why it closes.
    """

    client = ASCII10Client
    told = None


class SeqStreamTests(_ListenerStreamMixin, SynchronousTestCase):
    """
    The rule on a C{seq} listener (a client of version 3): a BYE.
    """

    client = SeqClient


class WebSocketStreamTests(_ListenerStreamMixin, SynchronousTestCase):
    """
    The rule at C{/ws}: a C{bye}.
    """

    client = WebSocketClient


class EventsStreamTests(_ListenerStreamMixin, SynchronousTestCase):
    """
    The rule at C{/events}: a C{bye} event.
    """

    client = EventsClient
