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

Given C{streams} (names and patterns), the client speaks version 4 and
subscribes to each: every stream resumes on its own, and C{onMessage} and
C{onGap} are called with the stream's name first::

    client = connect(reactor, endpoint, lambda name, seq, message: ..., streams=["prices.*"])
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IProtocolFactory,
    ISSLTransport,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from zope.interface import implementer

from streamd._compat import FactoryOf
from streamd.client import ClientTimeout, ConnectTimeout, HandshakeTimeout
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, FrameTooLong, Payload
from streamd.names import isPattern, matches
from streamd.protocol import FramedProtocol, noDelay
from streamd.reasons import Reason
from streamd.seqframing import (
    ACK_VERSION,
    BATCH_LIMIT,
    IDENTITY_SIZE,
    PING_VERSION,
    SMSG_OVERHEAD,
    STREAMS_VERSION,
    Ack,
    Auth,
    Batch,
    Bye,
    ClientFrame,
    ClientHello,
    Gap,
    GapReason,
    MalformedFrame,
    Msg,
    Ping,
    Pong,
    Pub,
    Refused,
    SBatch,
    ServerHello,
    SGap,
    SMsg,
    SPub,
    Start,
    StreamStart,
    Sub,
    decodeServerFrame,
    framed,
)
from streamd.seqframing import Position as ResumeAt

if TYPE_CHECKING:
    from streamd.client.numbered import NumberedPublisher

ONE_STREAM_VERSION = 3
"""
The version a client of one stream (its listener's) speaks: its messages
come as MSG and BATCH frames.
"""

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


FATAL = frozenset(reason.value for reason in Reason if not reason.reconnect)
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


class NoHelloTimeout(ClientTimeout):
    """
    Connected (and, over TLS, through the handshake), but the server's
    HELLO did not come within C{seconds}: the port may not be a C{seq}
    listener, or may expect TLS.
    """

    what = "HELLO"


@dataclass
class Position:
    """
    The last message delivered, and the epoch its number belongs to.
    """

    epoch: bytes | None = None
    last: int = 0


@implementer(IHandshakeListener)
class SeqClientProtocol(FramedProtocol):
    """
    One connection to a C{seq} listener: delivers each message (of a MSG or
    a BATCH) it has not delivered yet, in order, answers PINGs, reports GAPs and BYEs.

    @ivar finished: fires with the reason the connection ended (an
        exception: C{ConnectionDone} when it was closed cleanly, a
        L{ClientTimeout} when the server did not answer in time); it never
        fails, so that the connections a resuming client leaves behind
        leave no unhandled error.
    @ivar bye: the server's BYE, if it sent one.
    @ivar tls: whether the connection is a TLS one.
    @ivar handshakeDone: whether its TLS handshake has completed.
    @ivar tooLong: the frame over the client's limit that ended the
        connection, if one did.
    """

    factory: SeqClientFactory
    framing = INT32
    bye: Bye | None = None
    hello: ServerHello | None = None
    _asked: ClientHello
    tls = False
    handshakeDone = False
    timedOut: ClientTimeout | None = None
    tooLong: FrameTooLong | None = None
    _deadline: IDelayedCall | None = None

    def __init__(self) -> None:
        self.finished: Deferred[BaseException] = Deferred()
        self._flushes: list[Deferred[None]] = []
        # A version 4 connection's streams, by the numbers its frames give.
        self._names: dict[int, str] = {}

    def connectionMade(self) -> None:
        super().connectionMade()
        noDelay(self.transport)
        self.tls = ISSLTransport.providedBy(self.transport)
        factory = self.factory
        if factory.timeout:
            self._deadline = factory.clock.callLater(factory.timeout, self._tooLate)
        if factory.token is not None:
            self.transport.write(framed(Auth(factory.token)))
        self._asked = factory.hello()
        frames: list[ClientFrame] = [self._asked, *factory.subscriptions()]
        self.transport.write(b"".join([framed(frame) for frame in frames]))
        if factory.streams:
            # The server answers in order: a REFUSED before the PONG of this
            # PING is a SUB's, one after it a message's.
            factory.subscribing = True
            self.flushed().addBoth(self._subscribed)

    def _subscribed(self, result: object) -> None:
        self.factory.subscribing = False

    def handshakeCompleted(self) -> None:
        self.handshakeDone = True

    def _tooLate(self) -> None:
        """
        The server has not answered within the timeout: say how far the
        connection got, and drop it.
        """
        self._deadline = None
        timeout = self.factory.timeout
        assert timeout is not None
        late = HandshakeTimeout if self.tls and not self.handshakeDone else NoHelloTimeout
        self.timedOut = late(timeout)
        self.transport.abortConnection()

    def _answered(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        factory = self.factory
        position = factory.position
        raised = False
        for payload in payloads:
            if self.transport.disconnecting:
                return
            try:
                frame = decodeServerFrame(payload)
            except MalformedFrame:
                self.transport.abortConnection()
                return
            if isinstance(frame, Batch):
                onMessage = factory.onMessage
                transport = self.transport
                for seq, message in enumerate(frame.payloads, frame.first):
                    if transport.disconnecting:
                        return
                    if seq > position.last:
                        position.last = seq
                        onMessage(seq, message)
            elif isinstance(frame, Msg):
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
            elif isinstance(frame, Pong):
                if self._flushes:
                    self._flushes.pop(0).callback(None)
            elif isinstance(frame, ServerHello):
                self._answered()
                self.hello = frame
                if frame.maxMessage:
                    # The server's largest message (version 3), rather than ours.
                    self.MAX_LENGTH = max(frame.maxMessage + SMSG_OVERHEAD, BATCH_LIMIT + SMSG_OVERHEAD)
                    raised = True
                if frame.epoch != position.epoch and min(frame.version, self._asked.version) < STREAMS_VERSION:
                    factory.previous = position.last if position.epoch is not None else None
                    position.epoch, position.last = frame.epoch, _before(self._asked, frame.newest)
                if factory.publisher is not None:
                    if frame.version < ACK_VERSION:
                        self.bye = Bye(Reason.BAD_REQUEST.value, "the server does not acknowledge what it is sent")
                        factory.onBye(self.bye)
                        self.transport.loseConnection()
                        return
                    factory.publisher.connected(self.transport)
            elif isinstance(frame, Ack):
                if factory.publisher is not None:
                    factory.publisher.acknowledged(frame.number)
            elif isinstance(frame, Bye):
                self._answered()
                self.bye = frame
                factory.onBye(frame)
            else:
                self._streamFrameReceived(frame)
        if raised:
            self.limitRaised()

    def _streamFrameReceived(self, frame: object) -> None:
        """
        A version 4 frame: a stream's start, messages and gaps, each
        delivered once, in order, per stream; or a refusal.
        """
        factory = self.factory
        single = not factory.streams
        if isinstance(frame, (SMsg, SBatch)):
            name = self._names.get(frame.stream)
            if name is None:
                return
            position = factory.positionOf(name)
            first, payloads = (
                (frame.seq, (frame.payload,)) if isinstance(frame, SMsg) else (frame.first, frame.payloads)
            )
            for seq, message in enumerate(payloads, first):
                if self.transport.disconnecting:
                    return
                if seq > position.last:
                    position.last = seq
                    if single:
                        factory.onMessage(seq, message)
                    else:
                        factory.onMessage(name, seq, message)
        elif isinstance(frame, StreamStart):
            self._names[frame.number] = frame.name
            position = factory.positionOf(frame.name)
            if frame.epoch != position.epoch:
                factory.previousOf[frame.name] = position.last if position.epoch is not None else None
                # Where it starts: a reconnection resumes from there, not
                # from before what this client asked for.
                position.epoch, position.last = frame.epoch, frame.next - 1
        elif isinstance(frame, SGap):
            name = self._names.get(frame.stream)
            if name is None:
                return
            position = factory.positionOf(name)
            position.last = max(position.last, frame.last)
            gap, previous = Gap(frame.first, frame.last, frame.reason), factory.previousOf.pop(name, None)
            if single:
                factory.onGap(gap, previous)
            else:
                factory.onGap(name, gap, previous)
        elif isinstance(frame, Refused):
            factory.onRefused(frame.subject, frame.text)

    def sendString(self, string: bytes) -> None:
        """
        Publish C{string}: to the factory's C{publishTo} stream, if it
        names one (version 4), else to the listener's.
        """
        stream = self.factory.publishTo
        self.transport.write(framed(Pub(string) if stream is None else SPub(stream, string)))

    def flushed(self) -> Deferred[None]:
        """
        Fires once the server has handled everything sent before: it
        answers a PING with a PONG (version 3; an older server is taken at
        its word once it said HELLO).  Fails with the connection's end if
        that comes first (a BYE says why).

        Messages published are then in the stream (or were refused with a
        BYE): publishing is at most once, and this is how a publisher knows.
        """
        d: Deferred[None] = Deferred()
        hello = self.hello
        if hello is not None and hello.version < PING_VERSION:
            d.callback(None)
        else:
            self._flushes.append(d)
            self.transport.write(framed(Ping()))
        return d

    def lengthLimitExceeded(self, length: int) -> None:
        self.tooLong = FrameTooLong(length, self.frameLimit)
        super().lengthLimitExceeded(length)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._answered()
        if self.factory.publisher is not None:
            self.factory.publisher.disconnected()
        assert reason.value is not None
        flushes, self._flushes = self._flushes, []
        for d in flushes:
            d.errback(Failure(reason.value))
        self.finished.callback(self.timedOut or reason.value)


def _before(asked: ClientHello, newest: int) -> int:
    """
    The last message before those a HELLO that C{asked} is sent, in a
    history whose newest is C{newest} (a GAP moves it on, if it says so):
    a reconnection resumes after it, not from before what was asked for.
    """
    if asked.start == Start.NEWEST:
        return newest
    if asked.start == Start.LAST:
        return max(newest - asked.position, 0)
    return 0


class SeqClientFactory(FactoryOf[SeqClientProtocol]):
    """
    Makes the connections of one client, which share its L{Position}.

    @ivar previous: the last message received before the daemon restarted,
        until the GAP that reports it.
    @ivar identity: the random name its HELLOs give, the same on every
        connection, so that what it published is not sent back to it when it
        resumes.
    @ivar timeout: seconds each connection has to get the server's HELLO
        (or a BYE), or C{None} to wait forever.
    @ivar clock: what times it.
    @ivar streams: the names and patterns a client of several streams
        subscribes to (version 4), or none for the listener's stream.
    @ivar positions: where each of those streams is, by name.
    @ivar publishTo: the stream L{SeqClientProtocol.sendString} publishes
        to, if not the listener's.
    @ivar subscribing: whether the server has yet to handle the SUBs of
        the current connection: a REFUSED then is a subscription's, not a
        message's.
    """

    protocol = SeqClientProtocol
    noisy = False

    def __init__(
        self,
        onMessage: Callable[..., Any],
        onGap: Callable[..., Any],
        onBye: Callable[[Bye], Any],
        last: int | None = None,
        token: bytes | None = None,
        maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
        timeout: float | None = None,
        clock: Any = None,
        streams: tuple[str, ...] = (),
        onRefused: Callable[[str, str], Any] = lambda subject, text: None,
        publishTo: str | None = None,
        since: int | None = None,
        publisher: NumberedPublisher | None = None,
    ) -> None:
        self.streams = streams
        self.since = since
        self.publisher = publisher
        self.onRefused = onRefused
        self.publishTo = publishTo
        self.positions: dict[str, Position] = {}
        self.previousOf: dict[str, int | None] = {}
        self.connected = False
        self.subscribing = False
        self.timeout = timeout
        self.clock = clock
        self.onMessage = onMessage
        self.onGap = onGap
        self.onBye = onBye
        self.last = last
        self.token = token
        self.maxMessageSize = maxMessageSize
        self.position = Position()
        self.previous: int | None = None
        self.identity = os.urandom(IDENTITY_SIZE)

    def positionOf(self, name: str) -> Position:
        """
        Where the stream C{name} is: for a client of its listener's stream
        alone, which a version 5 server sends as a named one, L{position}.
        """
        if not self.streams:
            return self.position
        return self.positions.setdefault(name, Position())

    def hello(self) -> ClientHello:
        """
        Where the next connection asks to start: after the last message
        delivered, else the last N messages, else those since a time,
        else from the newest.  A client that starts at a time or numbers
        what it publishes speaks version 5.
        """
        version = ACK_VERSION if self.since is not None or self.publisher is not None else ONE_STREAM_VERSION
        if self.streams:
            return ClientHello(max(version, STREAMS_VERSION), Start.NONE, bytes(8), 0, self.identity)
        position = self.position
        if position.epoch is not None:
            return ClientHello(version, Start.RESUME, position.epoch, position.last, self.identity)
        if self.last is not None:
            return ClientHello(version, Start.LAST, bytes(8), self.last, self.identity)
        if self.since is not None:
            return ClientHello(version, Start.SINCE, bytes(8), self.since, self.identity)
        return ClientHello(version, Start.NEWEST, bytes(8), 0, self.identity)

    def subscriptions(self) -> list[Sub]:
        """
        What the next connection subscribes to (version 4): each stream
        after the last message delivered; on the first connection, the
        last N messages or the newest; on the next ones, the streams a
        pattern matches that are new to this client from their oldest.
        """
        subs = []
        for subject in self.streams:
            known = [
                ResumeAt(name, position.epoch, position.last)
                for name, position in self.positions.items()
                if position.epoch is not None and matches(subject, name)
            ]
            if isPattern(subject) and self.connected:
                subs.append(Sub(Start.RESUME, subject, positions=tuple(known)))
            elif known:
                subs.append(Sub(Start.RESUME, subject, known[0].epoch, known[0].seq))
            elif self.last is not None:
                subs.append(Sub(Start.LAST, subject, position=self.last))
            elif self.since is not None:
                subs.append(Sub(Start.SINCE, subject, position=self.since))
            else:
                subs.append(Sub(Start.NEWEST, subject))
        self.connected = True
        return subs

    def buildProtocol(self, addr: object) -> SeqClientProtocol:
        protocol = SeqClientProtocol()
        protocol.factory = self
        # A version 2 server sends an entry of int32 data of up to
        # BATCH_LIMIT bytes as one BATCH, whatever its messages' sizes.
        protocol.MAX_LENGTH = max(self.maxMessageSize + SMSG_OVERHEAD, BATCH_LIMIT + SMSG_OVERHEAD)
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
        self._outcome: SeqClientProtocol | Failure | None = None
        self._waiting: list[Deferred[SeqClientProtocol]] = []
        if retryPolicy is not None:
            self.service = ClientService(endpoint, factory, retryPolicy=retryPolicy, clock=reactor)
            self.service.startService()
        else:
            connecting: Deferred[SeqClientProtocol] = endpoint.connect(factory)  # type: ignore[assignment]
            self._connecting = connecting
            connecting.addBoth(self._connected)

    def _connected(self, outcome: SeqClientProtocol | Failure) -> None:
        """
        Keep the one connection's outcome, for each caller of
        L{whenConnected}, each with a Deferred of its own.
        """
        self._connecting = None
        self._outcome = outcome
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            self._tell(d)

    def _tell(self, d: Deferred[SeqClientProtocol]) -> None:
        outcome = self._outcome
        if isinstance(outcome, Failure):
            d.errback(outcome)
        else:
            assert outcome is not None
            d.callback(outcome)

    @property
    def position(self) -> Position:
        return self.factory.position

    def whenConnected(self) -> Deferred[SeqClientProtocol]:
        """
        Fires with the current connection, or the next one made.
        """
        if self.service is not None:
            return self.service.whenConnected()  # type: ignore[return-value]
        d: Deferred[SeqClientProtocol] = Deferred()
        if self._outcome is None:
            self._waiting.append(d)
        else:
            self._tell(d)
        return d

    def stop(self) -> Deferred[None]:
        """
        Close the connection, and make no other.
        """
        if self.service is not None:
            return self.service.stopService()  # type: ignore[return-value]
        if self._connecting is not None:
            self._connecting.cancel()
        protocol = self._outcome
        if not isinstance(protocol, SeqClientProtocol):
            return succeed(None)
        protocol.transport.loseConnection()
        closed: Deferred[None] = Deferred()

        def ended(reason: BaseException) -> BaseException:
            closed.callback(None)
            return reason

        protocol.finished.addCallback(ended)
        return closed


def connect(
    reactor: Any,
    endpoint: str | IStreamClientEndpoint,
    onMessage: Callable[..., Any],
    resume: bool = True,
    last: int | None = None,
    onGap: Callable[..., Any] = lambda *gap: None,
    onBye: Callable[[Bye], Any] = lambda bye: None,
    token: bytes | None = None,
    maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE,
    retryPolicy: Callable[[int], float] = backoff,
    timeout: float | None = None,
    streams: tuple[str, ...] = (),
    onRefused: Callable[[str, str], Any] = lambda subject, text: None,
    publishTo: str | None = None,
    since: int | None = None,
    publisher: NumberedPublisher | None = None,
) -> SeqClient:
    """
    Connect to a C{seq} listener and call C{onMessage(seq, payload)} with
    every message, once; with C{streams}, C{onMessage(name, seq, payload)}
    with every message of each stream they name or match, once, and
    C{onGap(name, gap, previous)}.

    @param resume: connect again whenever the connection is lost, resuming
        after the last message delivered.
    @param last: on the first connection, ask for the last C{last} messages.
    @param onGap: called with each L{Gap}, and the last message number of the
        daemon's previous run when it restarted.
    @param onBye: called with each L{Bye}.
    @param token: sent in an AUTH frame, for a daemon that asks for one.
    @param retryPolicy: seconds to wait before each attempt to connect again
        (the argument counts the attempts since the last connection).
    @param streams: the stream names and patterns to subscribe to
        (version 4), or none for the listener's stream.
    @param onRefused: called with a subject (one of C{streams}, or
        C{publishTo}) and why the server refused it.
    @param publishTo: the stream the connections' C{sendString} publishes
        to (version 4), if not the listener's.
    @param since: on the first connection, start at the messages that
        came in from this millisecond (since 1970) on (version 5).
    @param publisher: numbers what is published through it, and sends it
        again on every connection until acknowledged (version 5; see
        L{streamd.client.numbered}).
    @param timeout: seconds each attempt has to connect (else it fails with
        L{ConnectTimeout}), then to get the server's HELLO (else the
        connection is dropped and its C{finished} fires with
        L{HandshakeTimeout} over TLS before the handshake completed,
        L{NoHelloTimeout} otherwise); C{None} to wait forever.  A resuming
        client tries again after either.
    """
    target = clientFromString(reactor, endpoint) if isinstance(endpoint, str) else endpoint
    if timeout:
        target = _TimedEndpoint(target, timeout, reactor)
    factory = SeqClientFactory(
        onMessage,
        onGap,
        onBye,
        last,
        token,
        maxMessageSize,
        timeout or None,
        reactor,
        streams,
        onRefused,
        publishTo,
        since,
        publisher,
    )
    return SeqClient(reactor, target, factory, retryPolicy if resume else None)


@implementer(IStreamClientEndpoint)
class _TimedEndpoint:
    """
    An endpoint whose attempts to connect give up after C{timeout} seconds,
    failing with L{ConnectTimeout}.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, timeout: float, clock: Any) -> None:
        self._endpoint = endpoint
        self._timeout = timeout
        self._clock = clock

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        connecting: Deferred[Any] = self._endpoint.connect(protocolFactory)  # type: ignore[assignment]
        return connecting.addTimeout(self._timeout, self._clock, onTimeoutCancel=self._timedOut)

    def _timedOut(self, result: object, timeout: float) -> object:
        if isinstance(result, Failure):
            raise ConnectTimeout(timeout)
        return result


__all__ = [
    "NoHelloTimeout",
    "Position",
    "SeqClient",
    "SeqClientFactory",
    "SeqClientProtocol",
    "connect",
    "describeBye",
    "describeGap",
]
