"""
Consuming a stream from Python.

    from streamd.client import connect

    def show(message: bytes) -> None:
        print(message)

    d = connect(reactor, "tcp:host=127.0.0.1:port=7000", show)
    d.addCallback(lambda protocol: protocol.sendString(b"hello"))

C{connect} fires with the connected L{StreamClientProtocol}; call its
C{sendString} to publish, and wait on its C{finished} Deferred, which fires
when the connection is closed: by the server, by this side, or because the
reactor is stopping (or fails with the reason it was lost).

Over TLS, which checks the server's certificate and host name, either with
Twisted's C{tls:} endpoint (C{trustRoots} is a directory of CA certificates;
without it, the system's CAs are trusted):

    d = connect(reactor, "tls:host=example.org:port=7443:trustRoots=/etc/streamd/ca", show)

or with TLS settings from L{streamd.tls.clientTLS} (or Twisted's
C{optionsForClientTLS}) around any endpoint:

    tls = clientTLS("example.org", cafile="ca.pem", cert="me.pem", key="me.key")
    d = connect(reactor, "tcp:host=example.org:port=7443", show, tls=tls)

A failed handshake shows as C{finished} failing; L{streamd.tls.handshakeFailure}
says why in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamClientEndpoint
from twisted.internet.protocol import Factory, connectionDone
from twisted.python.failure import Failure

from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, FrameError, Framing
from streamd.protocol import FramedProtocol, noDelay


class StreamClientProtocol(FramedProtocol):
    """
    A client of a streamd server: hands every message to the factory's
    C{onMessage}, and sends with L{sendString}.

    @ivar finished: fires with C{None} when the server closes the
        connection cleanly, when this side closes it, or when the reactor
        stops (which closes it); fails with the reason it was lost
        otherwise.
    @ivar frameError: what was wrong with the server's bytes, if that is why
        the connection was dropped.
    """

    factory: StreamClientFactory
    frameError: FrameError | None = None
    _stopping = False
    _shutdownTrigger: Any = None

    def __init__(self) -> None:
        self.finished: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        noDelay(self.transport)
        if self.factory.reactor is not None:
            self._shutdownTrigger = self.factory.reactor.addSystemEventTrigger(
                "before", "shutdown", self._reactorStopping
            )
        if self.factory.token is not None:
            self.sendString(self.factory.token)

    def stringReceived(self, string: bytes) -> None:
        self.factory.onMessage(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self.frameError = self._decoder.error
        super().lengthLimitExceeded(length)

    def frameErrorReceived(self, error: FrameError) -> None:
        self.frameError = error
        super().frameErrorReceived(error)

    def _reactorStopping(self) -> None:
        # A program that stops its reactor is done with the stream, so the
        # connection that stopping closes is not an error to report.
        self._shutdownTrigger = None
        self._stopping = True
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._shutdownTrigger is not None:
            self.factory.reactor.removeSystemEventTrigger(self._shutdownTrigger)
            self._shutdownTrigger = None
        if self.frameError is None and (self._stopping or reason.check(ConnectionDone)):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)


class StreamClientFactory(Factory[StreamClientProtocol]):
    """
    Makes L{StreamClientProtocol}s that call C{onMessage} with each message,
    and send C{token} first when there is one.

    @ivar reactor: when given, its shutdown closes the connections cleanly
        (C{finished} fires with C{None}).
    """

    protocol = StreamClientProtocol
    noisy = False

    def __init__(
        self,
        onMessage: Callable[[bytes], Any],
        maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
        framing: Framing = INT32,
        token: bytes | None = None,
        reactor: Any = None,
    ) -> None:
        self.onMessage = onMessage
        self.maxMessageSize = maxMessageSize
        self.framing = framing
        self.token = token
        self.reactor = reactor

    def buildProtocol(self, addr: object) -> StreamClientProtocol:
        protocol = StreamClientProtocol()
        protocol.factory = self
        protocol.framing = self.framing
        protocol.MAX_LENGTH = self.maxMessageSize
        return protocol


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    onMessage: Callable[[bytes], Any],
    maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
    framing: Framing = INT32,
    token: bytes | None = None,
    tls: IOpenSSLClientConnectionCreator | None = None,
) -> Deferred[StreamClientProtocol]:
    """
    Connect to a streamd server and call C{onMessage} with every message.

    @param endpoint: a client endpoint, or its description
        (C{tcp:host=127.0.0.1:port=7000}).
    @param token: sent as the first frame, for a server that asks for one.
    @param tls: TLS settings to speak TLS over C{endpoint}, such as
        L{streamd.tls.clientTLS} makes.
    @return: fires with the connected protocol.
    """
    target = clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    if tls is not None:
        target = wrapClientTLS(tls, target)
    factory = StreamClientFactory(onMessage, maxMessageSize, framing, token, reactor)
    connecting: Deferred[StreamClientProtocol] = target.connect(factory)  # type: ignore[assignment]
    return connecting


__all__ = ["StreamClientFactory", "StreamClientProtocol", "connect"]
