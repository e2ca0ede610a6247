"""
Consuming a stream from Python::

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
without it, the system's CAs are trusted)::

    d = connect(reactor, "tls:host=example.org:port=7443:trustRoots=/etc/streamd/ca", show)

or with TLS settings from L{streamd.tls.clientTLS} (or Twisted's
C{optionsForClientTLS}) around any endpoint::

    tls = clientTLS("example.org", cafile="ca.pem", cert="me.pem", key="me.key")
    d = connect(reactor, "tcp:host=example.org:port=7443", show, tls=tls)

A failed handshake shows as C{finished} failing; L{streamd.tls.handshakeFailure}
says why in one line.

A client pointed at the wrong kind of port can wait forever: a TLS server
waits for a handshake that a plain client never starts, while the client
waits for frames.  With C{timeout=SECONDS}, C{connect} fails with
L{ConnectTimeout} if it cannot connect in time, and C{finished} fails with
L{HandshakeTimeout} if a TLS handshake does not complete in time or, without
TLS, with L{NoDataTimeout} if nothing at all arrives in time (pass
C{expectData=False} for a client that only sends).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString, wrapClientTLS
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from streamd._compat import FactoryOf
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, FrameError, FrameTooLong, Framing
from streamd.protocol import FramedProtocol, noDelay


class ClientTimeout(Exception):
    """
    A connection that got nowhere within C{seconds}.
    """

    what = "progress"

    def __init__(self, seconds: float) -> None:
        super().__init__(f"no {self.what} within {seconds:g} s")
        self.seconds = seconds


class ConnectTimeout(ClientTimeout):
    """
    No connection within C{seconds}.
    """

    what = "connection"


class HandshakeTimeout(ClientTimeout):
    """
    Connected, but the TLS handshake did not complete within C{seconds}: the
    server may not speak TLS on that port.
    """

    what = "completed TLS handshake"


class NoDataTimeout(ClientTimeout):
    """
    Connected without TLS, but not one byte arrived within C{seconds}: the
    server may expect TLS on that port, or have nothing to send yet.
    """

    what = "data"


@implementer(IHandshakeListener)
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
    @ivar tls: whether the connection is a TLS one.
    @ivar handshakeDone: whether its TLS handshake has completed.
    @ivar heard: whether any bytes came from the server.
    """

    factory: StreamClientFactory
    frameError: FrameError | None = None
    tls = False
    handshakeDone = False
    heard = False
    _timedOut: ClientTimeout | None = None
    _deadline: IDelayedCall | None = None
    _stopping = False
    _shutdownTrigger: Any = None

    def __init__(self) -> None:
        self.finished: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        noDelay(self.transport)
        self.tls = ISSLTransport.providedBy(self.transport)
        reactor, timeout = self.factory.reactor, self.factory.timeout
        if reactor is not None:
            self._shutdownTrigger = reactor.addSystemEventTrigger("before", "shutdown", self._reactorStopping)
            if timeout and self.tls:
                self._deadline = reactor.callLater(timeout, self._tooLate, HandshakeTimeout(timeout))
            elif timeout and self.factory.expectData:
                self._deadline = reactor.callLater(timeout, self._tooLate, NoDataTimeout(timeout))
        if self.factory.token is not None:
            self.sendString(self.factory.token)

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True
        self._cancelDeadline()

    def dataReceived(self, data: bytes) -> None:
        self.heard = True
        self._cancelDeadline()
        super().dataReceived(data)

    def _cancelDeadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _tooLate(self, reason: ClientTimeout) -> None:
        self._deadline = None
        self._timedOut = reason
        self.transport.abortConnection()

    def stringReceived(self, string: bytes) -> None:
        self.factory.onMessage(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self.frameError = FrameTooLong(length, self.MAX_LENGTH)
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
        self._cancelDeadline()
        if self._timedOut is not None:
            self.finished.errback(Failure(self._timedOut))
        elif self.frameError is None and (self._stopping or reason.check(ConnectionDone)):
            self.finished.callback(None)
        else:
            self.finished.errback(reason)


class StreamClientFactory(FactoryOf[StreamClientProtocol]):
    """
    Makes L{StreamClientProtocol}s that call C{onMessage} with each message,
    and send C{token} first when there is one.

    @ivar reactor: when given, its shutdown closes the connections cleanly
        (C{finished} fires with C{None}), and it times the C{timeout}.
    @ivar timeout: seconds after connecting within which a TLS handshake
        must complete or, without TLS and with C{expectData}, the first
        bytes must arrive; C{None} to wait forever.
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
        timeout: float | None = None,
        expectData: bool = True,
    ) -> None:
        self.onMessage = onMessage
        self.maxMessageSize = maxMessageSize
        self.framing = framing
        self.token = token
        self.reactor = reactor
        self.timeout = timeout
        self.expectData = expectData

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
    timeout: float | None = None,
    expectData: bool = True,
) -> Deferred[StreamClientProtocol]:
    """
    Connect to a streamd server and call C{onMessage} with every message.

    @param endpoint: a client endpoint, or its description
        (C{tcp:host=127.0.0.1:port=7000}).
    @param token: sent as the first frame, for a server that asks for one.
    @param tls: TLS settings to speak TLS over C{endpoint}, such as
        L{streamd.tls.clientTLS} makes.
    @param timeout: seconds to connect (else L{ConnectTimeout}), and then to
        complete a TLS handshake (else C{finished} fails with
        L{HandshakeTimeout}) or, without TLS, to receive the first bytes
        (else L{NoDataTimeout}); C{None} to wait forever.
    @param expectData: C{False} for a client that only sends, to which a
        quiet server is no sign of a wrong port.
    @return: fires with the connected protocol.
    """
    target = clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    if tls is not None:
        target = wrapClientTLS(tls, target)
    factory = StreamClientFactory(onMessage, maxMessageSize, framing, token, reactor, timeout, expectData)
    connecting: Deferred[StreamClientProtocol] = target.connect(factory)  # type: ignore[assignment]
    if timeout:
        connecting.addTimeout(timeout, reactor, onTimeoutCancel=_connectTimedOut)
    return connecting


def _connectTimedOut(result: object, timeout: float) -> object:
    if isinstance(result, Failure):
        raise ConnectTimeout(timeout)
    return result


__all__ = [
    "ClientTimeout",
    "ConnectTimeout",
    "HandshakeTimeout",
    "NoDataTimeout",
    "StreamClientFactory",
    "StreamClientProtocol",
    "connect",
]
