"""
Real TLS connections on loopback, with certificates made here: the daemon
in process, the client and C{twistd streamd} as real processes.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any

from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet import defer, reactor
from twisted.internet.endpoints import HostnameEndpoint, quoteStringArgument, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from streamd.client import StreamClientProtocol, connect
from streamd.config import DaemonConfig, Listen, ServerConfig
from streamd.framing import ASCII10, INT32
from streamd.reads import READ_SIZE
from streamd.reasons import Reason
from streamd.seqframing import SEQ
from streamd.service import StreamdService
from streamd.tls import clientTLS, handshakeFailure

from ..support import ENV, spawnTwistd, startDaemon, waitFor
from ..test_tls import _PKIMixin
from .test_integration import TICK, Collector


class _TLSDaemonMixin(_PKIMixin):
    """
    A daemon with one C{ssl:} listener on the real reactor, and clients that
    connect to it with TLS.
    """

    timeout = 10
    addCleanup: Callable[..., None]
    assertEqual: Callable[..., None]
    assertFailure: Callable[..., defer.Deferred[Any]]

    def startDaemon(
        self, key: str = "server", clientCA: str | None = None, **settings: Any
    ) -> tuple[StreamdService, int]:
        caFile = self.pki.path(clientCA) if clientCA else None
        settings.setdefault("sources", ())
        config = DaemonConfig(
            listens=(Listen(self.pki.listen(key), INT32, caFile),), statsInterval=0, **settings
        )
        return startDaemon(self, config)

    def tlsEndpoint(self, port: int, host: str = "127.0.0.1", **settings: Any) -> Any:
        """
        A client endpoint to the daemon with the TLS settings of
        L{clientTLS}, trusting the test CA unless told otherwise.
        """
        settings.setdefault("cafile", self.pki.path("ca.pem"))
        return wrapClientTLS(clientTLS(host, **settings), HostnameEndpoint(reactor, "127.0.0.1", port))

    @defer.inlineCallbacks
    def connected(self, endpoint: Any, onMessage: Callable[[bytes], Any], **settings: Any) -> Any:
        """
        Connect, and make sure the client is closed when the test ends.
        """
        client: StreamClientProtocol = yield connect(reactor, endpoint, onMessage, **settings)

        def close() -> defer.Deferred[None]:
            if client.transport.connected:
                client.transport.abortConnection()
            return client.finished.addErrback(lambda _: None)

        self.addCleanup(close)
        return client

    @defer.inlineCallbacks
    def assertShutOut(
        self, service: StreamdService, witnessEndpoint: Any, endpoint: Any, failure: type
    ) -> Any:
        """
        A client on C{endpoint} fails its handshake with C{failure}: it
        receives nothing that is published while it is connected, and what
        it sends does not reach a client on C{witnessEndpoint}.

        @return: the failure's one-line description.
        """
        heard = Collector(2)
        witness = yield self.connected(witnessEndpoint, heard)
        yield waitFor(lambda: len(service.connections) == 1)
        service.hub.publish([b"before"])
        yield waitFor(lambda: heard.messages == [b"before"])

        factory = service.listeners[0].factory
        buildProtocol = factory.buildProtocol
        connectedWhenPublished: list[int] = []

        def publishOnceConnected() -> None:
            connectedWhenPublished.append(len(service.connections))
            service.hub.publish([b"secret"])

        def building(address: Any) -> Any:
            reactor.callLater(0, publishOnceConnected)
            return buildProtocol(address)

        factory.buildProtocol = building  # type: ignore[method-assign,assignment]
        refused: list[bytes] = []
        client = yield self.connected(endpoint, refused.append)
        client.sendString(b"injected")
        reason = yield self.assertFailure(client.finished.addTimeout(5, reactor), failure)
        factory.buildProtocol = buildProtocol  # type: ignore[method-assign]
        yield waitFor(lambda: len(service.connections) == 1)
        service.hub.publish([b"after"])
        yield waitFor(lambda: len(heard.messages) == 3)
        self.assertEqual(connectedWhenPublished, [2])
        self.assertEqual(heard.messages, [b"before", b"secret", b"after"])
        self.assertEqual(refused, [])
        witness.transport.loseConnection()
        yield witness.finished
        return handshakeFailure(Failure(reason))


class TLSConnectionTests(_TLSDaemonMixin, TestCase):
    """
    Clients check the server's certificate and host name, and only then
    get the stream.
    """

    @defer.inlineCallbacks
    def test_roundTrip(self):  # type: ignore[no-untyped-def]
        """
        A client on Twisted's C{tls:} endpoint, trusting a directory that
        holds the test CA, gets what the daemon publishes (the clock source
        here), and another client gets what it sends.
        """
        service, port = self.startDaemon(sources=("clock",), interval=0.05)
        roots = quoteStringArgument(self.pki.path("roots"))
        ticks = Collector(1)
        sender = yield self.connected(f"tls:host=localhost:port={port}:trustRoots={roots}", ticks)
        self.assertTrue(TICK.match((yield ticks.enough)[0]))
        heard = Collector(1)
        listener = yield self.connected(self.tlsEndpoint(port), lambda m: None if TICK.match(m) else heard(m))
        yield waitFor(lambda: len(service.connections) == 2)
        sender.sendString(b"over TLS")
        self.assertEqual((yield heard.enough), [b"over TLS"])
        for client in (sender, listener):
            client.transport.loseConnection()
            yield client.finished

    @defer.inlineCallbacks
    def test_maxClients(self):  # type: ignore[no-untyped-def]
        """
        On an C{ssl:} listener, a connection past --max-clients is closed at
        once (TLS wraps whatever the factory returns, so the refusal must
        close the connection itself), and the admitted client keeps going.
        """
        service, port = self.startDaemon(server=ServerConfig(maxClients=1))
        first = yield self.connected(self.tlsEndpoint(port), lambda m: None)
        yield waitFor(lambda: len(service.connections) == 1)
        extra = socket.create_connection(("127.0.0.1", port))
        self.addCleanup(extra.close)
        extra.setblocking(False)

        def closedByServer() -> bool:
            try:
                return extra.recv(100) == b""
            except BlockingIOError:
                return False
            except ConnectionResetError:
                return True

        yield waitFor(closedByServer)
        self.assertEqual(service.stats.disconnects[Reason.MAX_CLIENTS], 1)
        self.assertTrue(first.transport.connected)

    @defer.inlineCallbacks
    def test_wrongHostName(self):  # type: ignore[no-untyped-def]
        """
        A certificate signed by a trusted CA but for other names is refused
        by the client: it gets nothing and injects nothing.
        """
        service, port = self.startDaemon()
        description = yield self.assertShutOut(
            service, self.tlsEndpoint(port), self.tlsEndpoint(port, host="streamd.invalid"), VerificationError
        )
        self.assertEqual(
            description,
            "TLS handshake failed: the server's certificate does not match host name streamd.invalid",
        )

    @defer.inlineCallbacks
    def test_untrustedCertificate(self):  # type: ignore[no-untyped-def]
        """
        A certificate from a CA the client does not trust is refused: the
        client gets nothing and injects nothing.
        """
        service, port = self.startDaemon(key="rogue")
        witness = self.tlsEndpoint(port, cafile=None, insecure=True)
        description = yield self.assertShutOut(service, witness, self.tlsEndpoint(port), SSL.Error)
        self.assertIn("TLS handshake failed: certificate verify failed", description)


class _Opening(Protocol):
    """
    A client that sends C{opening} once connected, and ignores what it is
    sent.
    """

    def __init__(self, opening: bytes) -> None:
        self.opening = opening

    def connectionMade(self) -> None:
        self.transport.write(self.opening)


_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


class NoDelayTests(_TLSDaemonMixin, TestCase):
    """
    Every transport, plain and over TLS, has Nagle's algorithm off on the
    daemon's side: a small message leaves at once, not when the client
    has acknowledged the one before.
    """

    @defer.inlineCallbacks
    def test_everyTransport(self):  # type: ignore[no-untyped-def]
        """
        int32, ascii10 and seq clients, WebSocket and event-stream clients,
        on plain and TLS listeners: each session's socket has
        C{TCP_NODELAY} set; and on a plain one, each that may publish (all
        but event streams) reads up to L{READ_SIZE} bytes at once (the
        C{bigReads} shortcut), growing from Twisted's 64 KiB.
        """
        plain, tls = "tcp:0:interface=127.0.0.1", self.pki.listen()
        service, _ = startDaemon(
            self,
            DaemonConfig(
                listens=(Listen(plain), Listen(plain, ASCII10), Listen(plain, SEQ), Listen(tls), Listen(tls, SEQ)),
                http=(plain, tls),
                sources=(),
                statsInterval=0,
            ),
        )
        events = b"GET /events HTTP/1.0\r\n\r\n"
        # What each listener's clients send first, and whether it is TLS.
        clients = [
            ([b""], False),
            ([b""], False),
            ([b""], False),
            ([b""], True),
            ([b""], True),
            ([_UPGRADE, events], False),
            ([_UPGRADE, events], True),
        ]
        for listener, (openings, secure) in zip(service.listeners, clients, strict=True):
            port = listener.port.getHost().port
            for opening in openings:
                endpoint = self.tlsEndpoint(port) if secure else HostnameEndpoint(reactor, "127.0.0.1", port)
                client = yield endpoint.connect(Factory.forProtocol(lambda o=opening: _Opening(o)))
                self.addCleanup(client.transport.abortConnection)
        yield waitFor(lambda: len(list(service.connections)) == 9, details=lambda: list(service.connections))
        # One session of each kind on each listener.
        kinds = {(session.adapter.protocol, session.adapter.transport.getHost().port) for session in service.connections}
        self.assertEqual(len(kinds), 9, kinds)
        for session in service.connections:
            adapter = session.adapter
            transport = adapter.transport
            if adapter.protocol != "sse":
                plain = isinstance(transport.getHandle(), socket.socket)
                self.assertEqual(adapter.readLimit, READ_SIZE if plain else None, session.peer)
            # Under TLS, the socket is that of the transport the TLS one wraps.
            while not isinstance(transport.getHandle(), socket.socket):
                transport = transport.transport
            sock = transport.getHandle()
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1, session.peer)


class MutualTLSTests(_TLSDaemonMixin, TestCase):
    """
    With --client-ca, only clients with a certificate from one of its CAs
    complete the handshake.
    """

    @defer.inlineCallbacks
    def test_accepted(self):  # type: ignore[no-untyped-def]
        """
        A client certificate signed by a CA in the --client-ca file (the
        second of two there) is accepted, and its client gets the stream;
        here through C{connect(..., tls=clientTLS(...))}, with the client's
        key in its certificate file.
        """
        service, port = self.startDaemon(clientCA="clients-ca.pem")
        heard = Collector(1)
        tls = clientTLS("127.0.0.1", cafile=self.pki.path("ca.pem"), cert=self.pki.path("client-both.pem"))
        client = yield self.connected(f"tcp:host=127.0.0.1:port={port}", heard, tls=tls)
        yield waitFor(lambda: len(service.connections) == 1)
        service.hub.publish([b"for certified clients"])
        self.assertEqual((yield heard.enough), [b"for certified clients"])
        client.transport.loseConnection()
        yield client.finished

    @defer.inlineCallbacks
    def test_noCertificate(self):  # type: ignore[no-untyped-def]
        """
        A client without a certificate is refused: it gets nothing and
        injects nothing.
        """
        service, port = self.startDaemon(clientCA="clients-ca.pem")
        witness = self.tlsEndpoint(port, cert=self.pki.path("client.pem"), key=self.pki.path("client.key"))
        description = yield self.assertShutOut(service, witness, self.tlsEndpoint(port), SSL.Error)
        self.assertIn("TLS handshake failed: tlsv13 alert certificate required", description)

    @defer.inlineCallbacks
    def test_otherCA(self):  # type: ignore[no-untyped-def]
        """
        A client certificate from a CA outside the --client-ca file is
        refused, even one the server's own certificate comes from: the
        client gets nothing and injects nothing.
        """
        service, port = self.startDaemon(clientCA="clients-ca.pem")
        witness = self.tlsEndpoint(port, cert=self.pki.path("client.pem"), key=self.pki.path("client.key"))
        stranger = self.tlsEndpoint(
            port, cert=self.pki.path("stranger.pem"), key=self.pki.path("stranger.key")
        )
        description = yield self.assertShutOut(service, witness, stranger, SSL.Error)
        self.assertIn("TLS handshake failed: tlsv1 alert unknown ca", description)


class ClientProcessTests(_TLSDaemonMixin, TestCase):
    """
    C{python -m streamd.client} with TLS options, as a real process.
    """

    def client(self, *argv: str) -> defer.Deferred[tuple[bytes, bytes, int]]:
        return getProcessOutputAndValue(sys.executable, ("-m", "streamd.client", *argv), env=ENV)

    @defer.inlineCallbacks
    def test_cafile(self):  # type: ignore[no-untyped-def]
        """
        --cafile trusts the test CA: the client prints a tick and exits 0,
        silently.
        """
        service, port = self.startDaemon(sources=("clock",), interval=0.05)
        out, err, code = yield self.client(
            "--port", str(port), "--cafile", self.pki.path("ca.pem"), "--count", "1"
        )
        self.assertEqual((code, err), (0, b""))
        self.assertTrue(TICK.match(out.strip()), out)

    @defer.inlineCallbacks
    def test_insecure(self):  # type: ignore[no-untyped-def]
        """
        --insecure connects to a server nobody trusts, and says on stderr, in
        one line, that nothing was checked.
        """
        service, port = self.startDaemon(key="rogue", sources=("clock",), interval=0.05)
        out, err, code = yield self.client("--port", str(port), "--insecure", "--count", "1")
        self.assertEqual(code, 0, err)
        self.assertTrue(TICK.match(out.strip()), out)
        self.assertEqual(len(err.splitlines()), 1)
        self.assertIn(b"WARNING: --insecure: the server's certificate is NOT checked", err)

    @defer.inlineCallbacks
    def test_verifyFailure(self):  # type: ignore[no-untyped-def]
        """
        A server certificate the client does not trust ends the client with
        one line saying so, status 1 and no output.
        """
        service, port = self.startDaemon(key="rogue", sources=("clock",), interval=0.05)
        out, err, code = yield self.client(
            "--port", str(port), "--cafile", self.pki.path("ca.pem"), "--count", "1"
        )
        self.assertEqual((out, code), (b"", 1))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(b"streamd.client: TLS handshake failed: certificate verify failed", err)

    @defer.inlineCallbacks
    def test_badCAFile(self):  # type: ignore[no-untyped-def]
        """
        A --cafile that is not a certificate ends the client with one line
        and status 1, before connecting.
        """
        notPEM = self.pki.write("not.pem", b"hello\n")
        out, err, code = yield self.client("--cafile", notPEM)
        self.assertEqual((out, code), (b"", 1))
        self.assertEqual(err, f"streamd.client: --cafile {notPEM} holds no PEM certificate\n".encode())


class TwistdMutualTLSTests(_PKIMixin, TestCase):
    """
    C{twistd streamd --listen ssl:... --client-ca} and the client's --cert
    and --key, as the user runs them.
    """

    timeout = 30

    @defer.inlineCallbacks
    def test_clientCertificate(self):  # type: ignore[no-untyped-def]
        """
        The client with a certificate from the --client-ca CA prints a tick;
        the client without one is refused with a one-line reason and status
        1.
        """
        daemon = spawnTwistd(
            self, "--listen", self.pki.listen(), "--interval", "0.05", "--client-ca", self.pki.path("clients-ca.pem")
        )
        port = str((yield daemon.listening))
        client = ("-m", "streamd.client", "--port", port, "--cafile", self.pki.path("ca.pem"), "--count", "1")
        certified = (*client, "--cert", self.pki.path("client.pem"), "--key", self.pki.path("client.key"))
        out, err, code = yield getProcessOutputAndValue(sys.executable, certified, env=ENV)
        self.assertEqual((code, err), (0, b""))
        self.assertTrue(TICK.match(out.strip()), out)
        out, err, code = yield getProcessOutputAndValue(sys.executable, client, env=ENV)
        self.assertEqual((out, code), (b"", 1))
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertIn(b"streamd.client: TLS handshake failed:", err)
        self.assertIn(b"requires a client certificate", err)


class MutualTLSWebTests(_PKIMixin, TestCase):
    """
    --client-ca covers the C{ssl:} endpoints of C{--http} too: without a
    client certificate, nothing of the stream, the figures or the page.
    """

    timeout = 10

    def get(self, port: int, **settings: Any) -> defer.Deferred[bytes]:
        """
        C{GET /healthz} over HTTPS in a thread, with the stdlib's client.
        """
        import ssl

        from twisted.internet.threads import deferToThread

        def fetch() -> bytes:
            context = ssl.create_default_context(cafile=self.pki.path("ca.pem"))
            if "cert" in settings:
                context.load_cert_chain(settings["cert"], settings["key"])
            with socket.create_connection(("127.0.0.1", port)) as raw:
                with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                    tls.sendall(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
                    return tls.recv(4096)

        return deferToThread(fetch)

    @defer.inlineCallbacks
    def test_httpsNeedsCertificate(self):  # type: ignore[no-untyped-def]
        """
        An HTTPS client with a certificate from the --client-ca file is
        answered; one without is refused in the handshake.
        """
        service, _ = startDaemon(
            self,
            DaemonConfig(
                listens=(Listen("tcp:0:interface=127.0.0.1"),),
                sources=(),
                statsInterval=0,
                http=(self.pki.listen(),),
                clientCA=self.pki.path("clients-ca.pem"),
            ),
        )
        port = service.listeners[1].port.getHost().port
        answer = yield self.get(port, cert=self.pki.path("client.pem"), key=self.pki.path("client.key"))
        self.assertTrue(answer.startswith(b"HTTP/1.0 200"), answer)
        failure = yield self.assertFailure(self.get(port), OSError)
        self.assertIn("certificate required", str(failure))
