"""
Tests for token authentication and publish permission.
"""

from __future__ import annotations

import os
import tempfile

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.usage import UsageError
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy, TokenFile, TokenFileError
from streamd.client import StreamClientFactory
from streamd.config import DaemonConfig, ServerConfig
from streamd.framing import ASCII10, INT32
from streamd.reasons import Reason
from streamd.service import StreamdService
from streamd.tap import Options

from .support import InMemoryDaemon, frames

READ_SECRET = b"reader-secret-4f1c"
PUBLISH_SECRET = b"publisher-secret-9d2e"


def tokenFile(content: bytes) -> str:
    fd, path = tempfile.mkstemp()
    os.write(fd, content)
    os.close(fd)
    return path


class _AuthMixin:
    def setUpDaemon(self, readToken: bool = True, publishToken: bool = False, readOnly: bool = False) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.readPath = tokenFile(READ_SECRET + b"\n")
        self.publishPath = tokenFile(PUBLISH_SECRET)
        policy = AccessPolicy(
            auth=TokenFile(self.readPath) if readToken else None,
            publish=TokenFile(self.publishPath) if publishToken else None,
            readOnly=readOnly,
        )
        self.daemon = InMemoryDaemon(ServerConfig(access=policy, authTimeout=5))

    def lines(self) -> list[str]:
        return [formatEvent(event) for event in self.events]

    def assertNoSecretLogged(self) -> None:
        for event in self.events:
            text = formatEvent(event) + repr(event)
            for secret in (READ_SECRET, PUBLISH_SECRET):
                self.assertNotIn(secret.decode(), text)  # type: ignore[attr-defined]
                self.assertNotIn(repr(secret), text)  # type: ignore[attr-defined]


class AuthenticationTests(_AuthMixin, SynchronousTestCase):
    """
    --auth-token-file: a client must send the token first, in time.
    """

    def setUp(self) -> None:
        self.setUpDaemon()

    def test_rightToken(self) -> None:
        """
        A client that sends the right token receives the stream from then on
        and, with no publish token configured, may publish.
        """
        client, transport = self.daemon.connect()
        otherClient, other = self.daemon.connect()
        otherClient.dataReceived(INT32.encode(READ_SECRET))
        self.daemon.hub.publish([b"before"])
        other.clear()
        self.assertEqual(transport.value(), b"")
        client.dataReceived(INT32.encode(READ_SECRET))
        self.daemon.hub.publish([b"after"])
        self.assertEqual(frames(transport.value()), [b"after"])
        client.dataReceived(INT32.encode(b"hello"))
        self.assertEqual(frames(other.value()), [b"after", b"hello"])
        self.assertFalse(transport.disconnecting)
        self.assertIn("127.0.0.1:40001 authenticated (publish)", self.lines())
        self.assertNoSecretLogged()

    def test_tokenAndMessagesInOneRead(self) -> None:
        """
        A token followed by messages in the same read: the token is taken off
        and only the messages are relayed to the authenticated others.
        """
        sender, _ = self.daemon.connect()
        receiver, receiverTransport = self.daemon.connect()
        receiver.dataReceived(INT32.encode(READ_SECRET))
        sender.dataReceived(INT32.encodeMany([READ_SECRET, b"one", b"two"]))
        self.assertEqual(frames(receiverTransport.value()), [b"one", b"two"])
        self.assertNoSecretLogged()

    def test_tokenSplitAcrossReads(self) -> None:
        """
        A token arriving one byte per read is still recognised.
        """
        client, transport = self.daemon.connect()
        data = INT32.encode(READ_SECRET)
        for i in range(len(data)):
            client.dataReceived(data[i : i + 1])
        self.assertFalse(transport.disconnecting)
        self.daemon.hub.publish([b"tick"])
        self.assertEqual(frames(transport.value()), [b"tick"])

    def test_wrongToken(self) -> None:
        """
        A wrong token is logged with the peer address only, and the client is
        dropped having received nothing.
        """
        client, transport = self.daemon.connect()
        self.daemon.hub.publish([b"secret stream"])
        client.dataReceived(INT32.encode(PUBLISH_SECRET))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")
        self.assertIn("127.0.0.1:40001 sent a wrong token; disconnecting", self.lines())
        self.assertEqual(self.daemon.stats.disconnects[Reason.AUTH_FAILED], 1)
        self.assertNoSecretLogged()

    def test_malformedTokenFrameNotLogged(self) -> None:
        """
        A token sent without framing, or in the wrong framing, is refused as a
        wrong token, and none of its bytes (nor a length read from them)
        reaches the log.
        """
        for data in (READ_SECRET, INT32.encode(READ_SECRET)):
            client, transport = self.daemon.connect(ASCII10)
            client.dataReceived(data)
            self.assertTrue(transport.disconnecting)
        rawAsLength = str(int.from_bytes(READ_SECRET[:4], "big"))
        self.assertFalse([line for line in self.lines() if rawAsLength in line])
        self.assertNoSecretLogged()
        self.assertEqual(self.daemon.stats.disconnects[Reason.AUTH_FAILED], 2)

    def test_oversizedTokenFrame(self) -> None:
        """
        A first frame announcing more than 4 KiB is refused as soon as its
        header arrives: an unauthenticated client cannot make the daemon
        hold a large frame.
        """
        client, transport = self.daemon.connect()
        client.dataReceived(INT32.header(4097))
        self.assertTrue(transport.disconnecting)
        client, transport = self.daemon.connect()
        client.dataReceived(INT32.header(4096) + b"x" * 100)
        self.assertFalse(transport.disconnecting)

    def test_nothingAfterARefusedToken(self) -> None:
        """
        Bytes that still arrive after a refused token frame (the connection
        is closing) are not taken as a second try, however right the token.
        """
        client, transport = self.daemon.connect()
        client.dataReceived(INT32.header(4097))
        client.dataReceived(INT32.encode(READ_SECRET) + INT32.encode(b"injected"))
        self.assertEqual(self.lines().count("127.0.0.1:40001 sent a wrong token; disconnecting"), 1)
        self.assertNotIn("127.0.0.1:40001 authenticated (read)", self.lines())
        self.assertEqual(len(self.daemon.hub.subscribers), 0)

    def test_noTokenInTime(self) -> None:
        """
        A client that sends no token within --auth-timeout is dropped when
        the time is up, not before.
        """
        _, transport = self.daemon.connect()
        self.daemon.clock.advance(4.9)
        self.assertFalse(transport.disconnecting)
        self.daemon.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertIn("127.0.0.1:40001 sent no token within --auth-timeout 5 s; disconnecting", self.lines())

    def test_unauthenticatedInjectsNothing(self) -> None:
        """
        Frames from a client with a wrong token reach nobody.
        """
        watcher, watcherTransport = self.daemon.connect()
        watcher.dataReceived(INT32.encode(READ_SECRET))
        intruder, intruderTransport = self.daemon.connect()
        intruder.dataReceived(INT32.encodeMany([b"not the token", b"injected"]))
        self.assertTrue(intruderTransport.disconnecting)
        self.daemon.hub.publish([b"real"])
        self.assertEqual(frames(watcherTransport.value()), [b"real"])


class PublishPermissionTests(_AuthMixin, SynchronousTestCase):
    """
    --publish-token-file and --read-only.
    """

    def test_readerCannotPublish(self) -> None:
        """
        With both tokens, a client that authenticated with the read token is
        read-only: its message is rejected, logged, and it is disconnected.
        """
        self.setUpDaemon(publishToken=True)
        reader, readerTransport = self.daemon.connect()
        watcher, watcherTransport = self.daemon.connect()
        watcher.dataReceived(INT32.encode(READ_SECRET))
        reader.dataReceived(INT32.encodeMany([READ_SECRET, b"let me in"]))
        self.assertTrue(readerTransport.disconnecting)
        self.daemon.hub.publish([b"real"])
        self.assertEqual(frames(watcherTransport.value()), [b"real"])
        self.assertIn(
            "127.0.0.1:40001 is read-only but sent 1 message(s); rejected, disconnecting", self.lines()
        )
        self.assertEqual(self.daemon.stats.disconnects[Reason.READ_ONLY], 1)

    def test_publisherPublishes(self) -> None:
        """
        A client that sent the publish token may publish to the readers.
        """
        self.setUpDaemon(publishToken=True)
        publisher, _ = self.daemon.connect()
        reader, readerTransport = self.daemon.connect()
        reader.dataReceived(INT32.encode(READ_SECRET))
        publisher.dataReceived(INT32.encodeMany([PUBLISH_SECRET, b"news"]))
        self.assertEqual(frames(readerTransport.value()), [b"news"])
        self.assertIn("127.0.0.1:40001 authenticated (publish)", self.lines())
        self.assertNoSecretLogged()

    def test_publishTokenOnly(self) -> None:
        """
        With only a publish token, anyone may read without a token, and only
        a client whose first frame is the publish token may publish.
        """
        self.setUpDaemon(readToken=False, publishToken=True)
        _, readerTransport = self.daemon.connect()
        self.daemon.hub.publish([b"open to read"])
        self.assertEqual(frames(readerTransport.value()), [b"open to read"])
        intruder, intruderTransport = self.daemon.connect()
        intruder.dataReceived(INT32.encode(b"spam"))
        self.assertTrue(intruderTransport.disconnecting)
        publisher, _ = self.daemon.connect()
        publisher.dataReceived(INT32.encodeMany([PUBLISH_SECRET, b"real news"]))
        self.assertEqual(frames(readerTransport.value()), [b"open to read", b"real news"])

    def test_readOnly(self) -> None:
        """
        --read-only: any message from any client is rejected and the client
        disconnected; the daemon's own sources still publish.
        """
        self.setUpDaemon(readToken=False, readOnly=True)
        client, transport = self.daemon.connect()
        _, otherTransport = self.daemon.connect()
        self.daemon.hub.publish([b"from a source"])
        client.dataReceived(INT32.encode(b"from a client"))
        self.assertTrue(transport.disconnecting)
        self.assertEqual(frames(otherTransport.value()), [b"from a source"])


class TokenFileTests(SynchronousTestCase):
    """
    Token files: read at start, checked, reloaded.
    """

    def test_usageErrors(self) -> None:
        """
        A missing or empty token file is a one-line usage error.
        """
        empty = tokenFile(b"  \n")
        cases = [
            (["--auth-token-file", "/nonexistent/token"], "cannot read token file /nonexistent/token"),
            (["--publish-token-file", empty], f"token file {empty} is empty"),
            (["--read-only", "--publish-token-file", tokenFile(b"x")], "cannot be combined"),
            (["--auth-timeout", "3"], "--auth-timeout needs --auth-token-file"),
            (["--auth-timeout", "3", "--publish-token-file", tokenFile(b"x")], "needs --auth-token-file"),
        ]
        for argv, message in cases:
            error = self.assertRaises(UsageError, Options().parseOptions, argv)
            self.assertIn(message, str(error))

    def test_authTimeout(self) -> None:
        """
        --auth-timeout applies with --auth-token-file, and defaults to 5 s.
        """
        options = Options()
        options.parseOptions(["--auth-token-file", tokenFile(b"x"), "--auth-timeout", "0.5"])
        self.assertEqual(options["auth-timeout"], 0.5)
        options = Options()
        options.parseOptions(["--auth-token-file", tokenFile(b"x")])
        self.assertEqual(options["auth-timeout"], 5.0)

    def test_reload(self) -> None:
        """
        Reloading picks up a changed token; a file emptied meanwhile leaves
        the old token in force and says so.
        """
        path = tokenFile(b"old")
        token = TokenFile(path)
        self.assertTrue(token.matches(b"old"))
        with open(path, "wb") as f:
            f.write(b"new\n")
        token.load()
        self.assertTrue(token.matches(b"new"))
        self.assertFalse(token.matches(b"old"))
        open(path, "wb").close()
        self.assertRaises(TokenFileError, token.load)
        self.assertTrue(token.matches(b"new"))

    def test_serviceReloadLogs(self) -> None:
        """
        The daemon's reload (what SIGHUP runs) logs which files it re-read,
        and never the tokens.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = tokenFile(READ_SECRET)
        policy = AccessPolicy(auth=TokenFile(path))
        service = StreamdService(
            None, DaemonConfig(listens=(), sources=(), server=ServerConfig(access=policy))
        )
        with open(path, "wb") as f:
            f.write(PUBLISH_SECRET)
        service.reloadTokens()
        self.assertTrue(policy.accessFor(PUBLISH_SECRET))
        self.assertIn(f"reloaded token file(s): {path}", [formatEvent(e) for e in events])
        self.assertFalse([e for e in events if PUBLISH_SECRET.decode() in formatEvent(e) + repr(e)])


class ClientTokenTests(_AuthMixin, SynchronousTestCase):
    """
    The client sends its token first.
    """

    def test_clientAuthenticates(self) -> None:
        """
        A client made with a token authenticates and receives the stream.
        """
        self.setUpDaemon()
        received: list[bytes] = []
        factory = StreamClientFactory(received.append, token=READ_SECRET)
        _, server, pump = connectedServerAndClient(
            lambda: self.daemon.factory.buildProtocol(None), lambda: factory.buildProtocol(None)
        )
        self.daemon.hub.publish([b"welcome"])
        pump.flush()
        self.assertEqual(received, [b"welcome"])
