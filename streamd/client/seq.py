"""
Consuming a C{seq} listener from Python (C{docs/protocol-seq.rst}): numbered
messages, resumed after every reconnect, never delivered twice::

    from streamd.client.seq import connect

    def show(seq: int, message: bytes) -> None:
        print(seq, message)

    client = connect(reactor, "tcp:host=127.0.0.1:port=7001", show, onGap=print, onBye=print)
    ...
    client.stop()

With C{resume=True} (the default) the client reconnects forever, with
exponential backoff and jitter (Twisted's C{ClientService} with C{backoff}), and each new
connection asks for the messages after the last one delivered; C{onGap} is
called with each L{Gap} (messages it will not get) and C{onBye} with each
L{Bye} (why the daemon closed the connection).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure

from streamd._compat import FactoryOf
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, Payload
from streamd.protocol import FramedProtocol, noDelay
from streamd.reasons import Reason
from streamd.seqframing import (
    MSG_OVERHEAD,
    VERSION,
    Auth,
    Bye,
    ClientHello,
    Gap,
    GapReason,
    MalformedFrame,
    Msg,
    Ping,
    Pong,
    Pub,
    ServerHello,
    Start,
    decodeServerFrame,
    framed,
)

GAP_TEXT = {
    GapReason.EVICTED: "evicted from history",
    GapReason.RESTARTED: "the daemon restarted",
    GapReason.CLUSTER: "not received from the cluster",
}


def describeGap(gap: Gap, previous: int | None = None) -> str:
    """
    One line for people about C{gap}: C{missed 1,204 messages (seq
    5001-6204): evicted from history}.  C{previous} is the last message
    received before a restart, if any.
    """
    why = GAP_TEXT.get(gap.reason, f"reason {gap.reason}")  # type: ignore[call-overload]
    if gap.reason == GapReason.RESTARTED and previous is not None:
        why += f", messages after seq {previous:,} of its previous run are lost"
    count = gap.last - gap.first + 1
    if count <= 0:
        return f"missed messages: {why}"
    return f"missed {count:,} message{'s' if count != 1 else ''} (seq {gap.first}-{gap.last}): {why}"


def describeBye(bye: Bye) -> str:
    """
    One line for people about C{bye}.
    """
    try:
        label = Reason(bye.code).label
    except ValueError:
        label = f"code {bye.code}"
    return f"disconnected by the server: {bye.text} ({label})"


FATAL = frozenset(
    reason.value
    for reason in (
        Reason.AUTH_FAILED,
        Reason.AUTH_TIMEOUT,
        Reason.READ_ONLY,
        Reason.BAD_FRAME,
        Reason.BAD_REQUEST,
        Reason.OVERSIZED_FRAME,
    )
)
"""
BYE codes after which connecting again would only be refused again.
"""


def backoff(attempt: int, initial: float = 0.1, limit: float = 30.0) -> float:
    """
    Exponential backoff with jitter: about C{initial} seconds before the
    first attempt to connect again, doubling up to C{limit}, each delay
    drawn from half to one and a half of that so that clients cut at once
    do not all come back at once.
    """
    return min(limit, initial * 2 ** max(attempt - 1, 0)) * random.uniform(0.5, 1.5)


@dataclass
class Position:
    """
    The last message delivered, and the epoch its number belongs to.
    """

    epoch: bytes | None = None
    last: int = 0


class SeqClientProtocol(FramedProtocol):
    """
    One connection to a C{seq} listener: delivers each MSG it has not
    delivered yet, answers PINGs, reports GAPs and BYEs.

    @ivar finished: fires with the reason the connection ended (an
        exception: C{ConnectionDone} when it was closed cleanly); it never
        fails, so that the connections a resuming client leaves behind
        leave no unhandled error.
    @ivar bye: the server's BYE, if it sent one.
    """

    factory: SeqClientFactory
    framing = INT32
    bye: Bye | None = None
    hello: ServerHello | None = None

    def __init__(self) -> None:
        self.finished: Deferred[BaseException] = Deferred()

    def connectionMade(self) -> None:
        super().connectionMade()
        noDelay(self.transport)
        factory = self.factory
        if factory.token is not None:
            self.transport.write(framed(Auth(factory.token)))
        self.transport.write(framed(factory.hello()))

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        factory = self.factory
        position = factory.position
        for payload in payloads:
            if self.transport.disconnecting:
                return
            try:
                frame = decodeServerFrame(payload)
            except MalformedFrame:
                self.transport.abortConnection()
                return
            if isinstance(frame, Msg):
                if frame.seq > position.last:
                    position.last = frame.seq
                    factory.onMessage(frame.seq, frame.payload)
            elif isinstance(frame, Ping):
                self.transport.write(framed(Pong()))
            elif isinstance(frame, Gap):
                previous = factory.previous
                factory.previous = None
                position.last = max(position.last, frame.last)
                factory.onGap(frame, previous)
            elif isinstance(frame, ServerHello):
                self.hello = frame
                if frame.epoch != position.epoch:
                    factory.previous = position.last if position.epoch is not None else None
                    position.epoch, position.last = frame.epoch, 0
            elif isinstance(frame, Bye):
                self.bye = frame
                factory.onBye(frame)

    def sendString(self, string: bytes) -> None:
        """
        Publish C{string}.
        """
        self.transport.write(framed(Pub(string)))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        assert reason.value is not None
        self.finished.callback(reason.value)


class SeqClientFactory(FactoryOf[SeqClientProtocol]):
    """
    Makes the connections of one client, which share its L{Position}.

    @ivar previous: the last message received before the daemon restarted,
        until the GAP that reports it.
    """

    protocol = SeqClientProtocol
    noisy = False

    def __init__(
        self,
        onMessage: Callable[[int, bytes], Any],
        onGap: Callable[[Gap, int | None], Any],
        onBye: Callable[[Bye], Any],
        last: int | None = None,
        token: bytes | None = None,
        maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.onMessage = onMessage
        self.onGap = onGap
        self.onBye = onBye
        self.last = last
        self.token = token
        self.maxMessageSize = maxMessageSize
        self.position = Position()
        self.previous: int | None = None

    def hello(self) -> ClientHello:
        """
        Where the next connection asks to start: after the last message
        delivered, else the last N messages, else from the newest.
        """
        position = self.position
        if position.epoch is not None:
            return ClientHello(VERSION, Start.RESUME, position.epoch, position.last)
        if self.last is not None:
            return ClientHello(VERSION, Start.LAST, bytes(8), self.last)
        return ClientHello(VERSION, Start.NEWEST, bytes(8), 0)

    def buildProtocol(self, addr: object) -> SeqClientProtocol:
        protocol = SeqClientProtocol()
        protocol.factory = self
        protocol.MAX_LENGTH = self.maxMessageSize + MSG_OVERHEAD
        return protocol


class SeqClient:
    """
    A client of a C{seq} listener: one connection, or, resuming, a
    C{ClientService} that connects again whenever the connection is lost.
    """

    def __init__(
        self,
        reactor: Any,
        endpoint: IStreamClientEndpoint,
        factory: SeqClientFactory,
        retryPolicy: Callable[[int], float] | None,
    ) -> None:
        self.factory = factory
        self.service: ClientService | None = None
        self._connecting: Deferred[SeqClientProtocol] | None = None
        if retryPolicy is not None:
            self.service = ClientService(endpoint, factory, retryPolicy=retryPolicy, clock=reactor)
            self.service.startService()
        else:
            self._connecting = endpoint.connect(factory)  # type: ignore[assignment]

    @property
    def position(self) -> Position:
        return self.factory.position

    def whenConnected(self) -> Deferred[SeqClientProtocol]:
        """
        Fires with the current connection, or the next one made.
        """
        if self.service is not None:
            return self.service.whenConnected()  # type: ignore[return-value]
        assert self._connecting is not None
        return self._connecting

    def stop(self) -> Deferred[None]:
        """
        Close the connection, and make no other.
        """
        if self.service is not None:
            return self.service.stopService()  # type: ignore[return-value]
        assert self._connecting is not None

        def close(protocol: SeqClientProtocol) -> Deferred[None]:
            protocol.transport.loseConnection()
            return protocol.finished.addCallback(lambda _: None)

        return self._connecting.addCallback(close)  # type: ignore[return-value]


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    onMessage: Callable[[int, bytes], Any],
    resume: bool = True,
    last: int | None = None,
    onGap: Callable[[Gap, int | None], Any] = lambda gap, previous: None,
    onBye: Callable[[Bye], Any] = lambda bye: None,
    token: bytes | None = None,
    maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
    retryPolicy: Callable[[int], float] = backoff,
) -> SeqClient:
    """
    Connect to a C{seq} listener and call C{onMessage(seq, payload)} with
    every message, once.

    @param resume: connect again whenever the connection is lost, resuming
        after the last message delivered.
    @param last: on the first connection, ask for the last C{last} messages.
    @param onGap: called with each L{Gap}, and the last message number of the
        daemon's previous run when it restarted.
    @param onBye: called with each L{Bye}.
    @param token: sent in an AUTH frame, for a daemon that asks for one.
    @param retryPolicy: seconds to wait before each attempt to connect again
        (the argument counts the attempts since the last connection).
    """
    target = clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    factory = SeqClientFactory(onMessage, onGap, onBye, last, token, maxMessageSize)
    return SeqClient(reactor, target, factory, retryPolicy if resume else None)


__all__ = ["Position", "SeqClient", "SeqClientFactory", "SeqClientProtocol", "connect", "describeBye", "describeGap"]
