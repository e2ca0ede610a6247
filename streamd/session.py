"""
One client's session, whatever its transport: what a connection is allowed
and owed.

A L{Session} owns everything a connection's rules decide: authentication
(tokens, and their rotation), the right to read and to publish, the limits
(C{--max-clients}, C{--auth-timeout}, C{--idle-timeout}, heartbeats, slow
consumers), where its stream starts and the gaps it is told of, the
counters, and one L{Session.drop} that logs a reason once, counts it once
and lets the transport say goodbye in its own dialect.

Each transport (C{int32}/C{ascii10} and C{seq} in L{streamd.server} and
L{streamd.seqserver}, WebSocket and SSE in L{streamd.web}) is a thin
adapter, an L{ISessionAdapter}: it reads its wire, calls the session, and
renders what the session says (a greeting, a gap, a goodbye) as its frames.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Attribute, Interface

from streamd.acks import Acknowledgements
from streamd.auth import ALL_STREAMS, Access, StreamRights, digest, originAllowed
from streamd.config import ServerConfig
from streamd.fanout.cursor import Cursor
from streamd.fanout.history import FIRST, SENDER, DiskFull, Entry, lastOf
from streamd.fanout.hub import Hub
from streamd.fanout.mux import Mux
from streamd.fanout.publishers import identityOf
from streamd.fanout.resume import HEAD, Gap, GapReason, PositionAhead, StartPoint, StartRequest, startPosition
from streamd.fanout.streams import StreamRefused, Streams
from streamd.framing import Framing, Payload
from streamd.names import DEFAULT, BadName, isPattern
from streamd.printable import preview
from streamd.protocol import PartialBudget
from streamd.reasons import Reason
from streamd.subscriptions import Subscriptions
from streamd.throttle import LogThrottle

if TYPE_CHECKING:
    from streamd.stats import Stats

CONNECTION_LINES = 20
"""
Connections, disconnections and goodbyes logged one by one in a second at
most; past that they are counted.
"""

BYE_GRACE = 5.0
"""
Seconds a client has to take its goodbye before the connection is aborted.
"""

MANY = StartRequest()
"""
What a client of several streams asks for (L{Session.startStreams}): each
stream starts as it subscribes to it.  Told apart from L{HEAD} by identity.
"""

MAX_UNANSWERED_PINGS = 16
"""
Pings a client may send without taking the pongs that answer them (a seq
PING, a WebSocket ping): past that it is cut (C{ping_flood}).
"""

MESSAGE_TIMEOUT = 60.0
"""
Seconds a client has to finish a message it began (or C{--idle-timeout},
if shorter), however steadily its pieces come.
"""

AHEAD_RETRY = 0.1
AHEAD_WAIT = 30.0
"""
Seconds between tries, and in all, at starting a stream that a client of
several streams resumes beyond the newest message of, when that stream's
numbers come from a JetStream cluster: this node is still catching up (or
has not joined yet), and will reach the client's position.  After that
(or at once, on a single node) the subscription is refused.
"""


class ISessionAdapter(Interface):
    """
    What a L{Session} needs from the transport it runs on.
    """

    kind = Attribute("The kind of listener: C{tcp}, C{websocket} or C{sse} (C{/metrics}).")
    protocol = Attribute("The wire protocol's name: C{int32}, C{ascii10}, C{seq}, C{websocket}, C{sse}.")
    peer = Attribute("The peer's address, for the log.")
    transport = Attribute("The connection, which the hub pauses when publishers must wait.")
    ping = Attribute("The heartbeat frame, or C{None} for no heartbeat.")
    pingAnswered = Attribute("Whether the client answers the heartbeat (else it only keeps a proxy awake).")

    def activity() -> tuple[int, int]:
        """
        Bytes received so far, and bytes the peer took (acknowledged, where
        the kernel tells; else handed to the transport).
        """

    def greeting(point: StartPoint | None, hub: Hub) -> bytes:
        """
        What the client is told as the stream of C{hub} starts at C{point}:
        a HELLO (or, on a connection of several streams, the stream's
        announcement), the gap it starts after.  A client of several
        streams is first sent its connection's greeting: C{point} is then
        C{None}, and C{hub} its listener's.
        """

    def gapNotice(gap: Gap, hub: Hub) -> bytes | None:
        """
        C{gap} in C{hub}'s stream, in the transport's dialect, or C{None}
        if it cannot say one (a client that would be told is cut instead).
        """

    def ownNotice(first: int, last: int, hub: Hub) -> bytes | None:
        """
        What a client that published messages C{first} to C{last} of
        C{hub}'s stream (not sent back to it) is told instead, or C{None}
        for nothing.
        """

    def framingFor(hub: Hub) -> Framing:
        """
        How C{hub}'s stream is sent on a connection of several streams
        (its messages say which stream they are of).
        """

    def refusal(subject: str, why: str) -> bytes | None:
        """
        What a client of several streams is told when its subscription to
        C{subject}, or a message it publishes there, is refused, C{why} in
        one line; C{None} if it cannot be told (it is then cut).
        """

    def goodbye(reason: Reason) -> bool:
        """
        Say why in the transport's dialect (nothing, a BYE, a close code,
        an event, an HTTP status before the stream) and close.

        @return: whether the client is being told, after what it is sent
            already: the session aborts it if it has not taken that within
            L{BYE_GRACE} seconds.  C{False} when the connection was closed
            at once.
        """

    def abort() -> None:
        """
        Close the connection now.
        """


class _Departed:
    """
    The owner of the cursor of a session that ended: it has nothing more
    to be told.
    """

    def slowConsumer(self, cursor: Cursor, reason: Reason, behind: int) -> None:
        pass

    def streamGap(self, cursor: Cursor, first: int, last: int) -> None:
        pass

    def ownMessages(self, cursor: Cursor, first: int, last: int) -> None:
        pass


DEPARTED = _Departed()


class SessionState(Enum):
    """
    Where a session is.
    """

    AWAITING = "awaiting"
    """
    Connected: waiting for its token or for the client to say where its
    stream starts.
    """
    STREAMING = "streaming"
    """
    Subscribed: sent the stream.
    """
    CLOSING = "closing"
    """
    Told why it is closed (or being sent its last messages at shutdown).
    """
    CLOSED = "closed"
    """
    The connection is gone.
    """


class Connections:
    """
    The daemon's open connections, across all its listeners and transports,
    and the lines about them in the log: its sessions, and the HTTP
    connections that are not (or no longer) a session, which count in
    C{--max-clients} alike.  Each connection counts once: an HTTP connection
    whose request becomes a session (L{Session.admit} with its C{host})
    counts as that session until it ends.

    @ivar partial: the memory all their unfinished incoming frames hold.
    @ivar descriptorLimit: how many connections the descriptors the daemon
        may open leave room for, when that is fewer than C{--max-clients}
        (see L{streamd.listen.descriptors}), else C{None}.
    """

    log = Logger()

    def __init__(self, maxPartialBytes: int, clock: IReactorTime) -> None:
        self._open: dict[Session, None] = {}
        self._channels: dict[Any, None] = {}
        self._waiting: list[Deferred[None]] = []
        self.partial = PartialBudget(maxPartialBytes)
        self.descriptorLimit: int | None = None
        # A storm of (re)connections, as after a restart, must not wait on
        # the log: past CONNECTION_LINES a second, lines are counted.
        self.connectedLines, self.startedLines, self.disconnectedLines, self.droppedLines = (
            LogThrottle(clock, self._summary(what), CONNECTION_LINES)
            for what in (
                "connected",
                "started their stream",
                "disconnected",
                "closed or refused by the daemon",
            )
        )

    def __len__(self) -> int:
        """
        Every connection: sessions, and HTTP connections that are not one.
        """
        return len(self._open) + len(self._channels)

    def __iter__(self) -> Iterator[Session]:
        """
        The sessions.
        """
        return iter(list(self._open))

    def full(self, maxClients: int) -> int | None:
        """
        The limit the connections have reached (C{maxClients}, or the
        descriptors' one), if they have.
        """
        limit = maxClients if self.descriptorLimit is None else min(maxClients, self.descriptorLimit)
        return limit if len(self) >= limit else None

    @property
    def channels(self) -> list[Any]:
        """
        The HTTP connections that are not a session now.
        """
        return list(self._channels)

    def add(self, session: Session) -> None:
        self._open[session] = None

    def discard(self, session: Session) -> None:
        self._open.pop(session, None)

    def addChannel(self, channel: Any) -> None:
        self._channels[channel] = None

    def discardChannel(self, channel: Any) -> bool:
        """
        Count C{channel} no more (it is gone, or it became a session).

        @return: whether it was counted.
        """
        return self._channels.pop(channel, False) is None

    def dropped(self, stats: Stats, peer: str, reason: Reason, **figures: Any) -> None:
        """
        The daemon closed or refused C{peer}'s connection for C{reason}:
        count it, and log it (with the C{figures} its text names) if the
        lines of this second allow.
        """
        stats.disconnects[reason] += 1
        if reason is not Reason.SHUTDOWN and self.droppedLines.admitOne():
            self.log.warn("{peer} " + reason.template, peer=peer, **figures)

    def settle(self) -> None:
        """
        Fire L{whenEmpty}'s Deferreds if no session is open.
        """
        if not self._open:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                d.callback(None)

    def whenEmpty(self) -> Deferred[None]:
        """
        Fires once no session is open.
        """
        if not self._open:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def _summary(self, what: str) -> Any:
        def report(count: int, size: int) -> None:
            self.log.info(
                "{count} more clients {what} in a second, not logged one by one ({n} connected)",
                count=count,
                what=what,
                n=len(self),
            )

        return report

    def reauthorize(self) -> None:
        """
        The token files were read again: each session keeps only the
        rights its token still grants.
        """
        for session in self:
            session.reauthorize()

    def stopLogging(self) -> None:
        """
        Log what the throttles held back, now (at shutdown).
        """
        for throttle in (self.connectedLines, self.startedLines, self.disconnectedLines, self.droppedLines):
            throttle.stop()


class SessionContext:
    """
    What the sessions of one listener share: its stream's hub, the
    daemon's streams (for a client of several), the clock, the rules, the
    daemon's connections, and the listener's description.
    """

    def __init__(
        self,
        hub: Hub,
        clock: IReactorTime,
        config: ServerConfig,
        connections: Connections,
        listener: str = "",
        streams: Streams | None = None,
    ) -> None:
        self.hub = hub
        self.clock = clock
        self.config = config
        self.connections = connections
        self.listener = listener
        self.streams = streams


class Session:
    """
    One client connection's rules, on any transport (see the module).

    The adapter calls L{admit} when the client connects, L{attach} with the
    transport the stream is written to, L{authenticate} with each token it
    presents, L{start} with where it asks its stream to start (at once, for
    a transport that numbers nothing), L{publish} with what it sends,
    L{answered} when it answers a heartbeat, and L{lost} when the connection
    is gone.  The hub calls L{slowConsumer}, L{streamGap} and
    L{ownMessages} (the L{streamd.fanout.cursor.CursorOwner} of its cursor).

    A client of several streams (L{startStreams}) then calls L{subscribe}
    and L{unsubscribe}, and its stream frames say which stream they are of.

    @ivar access: what the client may do now.
    @ivar rights: the streams it may read and publish to.
    @ivar cursor: its place in its listener's stream, once attached.
    @ivar subscriptions: the streams of a client of several, once started.
    @ivar identity: the publisher serial of a client of several streams
        that names itself (see L{streamd.seqserver.identitySerial}).
    """

    log = Logger()
    state = SessionState.AWAITING
    messagesIn = 0
    bytesIn = 0
    since = 0.0
    # Defaults here rather than in __init__: a storm of connections makes
    # thousands of sessions a second.
    cursor: Cursor | None = None
    subscriptions: Subscriptions | None = None
    rights: StreamRights = ALL_STREAMS
    identity: int | None = None
    reason: Reason | None = None
    _request: StartRequest | None = None
    _digest: bytes | None = None
    _admitted = False
    _unanswered = 0
    _unansweredPings = 0
    _throttle: LogThrottle | None = None
    _authCall: IDelayedCall | None = None
    _idleCall: IDelayedCall | None = None
    _pingCall: IDelayedCall | None = None
    _graceCall: IDelayedCall | None = None
    _messageCall: IDelayedCall | None = None
    _host: Any = None
    _held = 0
    _ownLines = True
    _publishedTo: dict[Hub, None] | None = None
    _acks: Acknowledgements | None = None
    _pending: list[tuple[str, StartRequest, dict[str, StartRequest]]] | None = None

    def __init__(self, context: SessionContext, adapter: ISessionAdapter, lines: LogThrottle | None = None) -> None:
        """
        @param lines: the throttle of the log lines about what the client
            publishes, when sessions share one (the requests of one HTTP
            listener: each request is a session); its owner stops it.
        """
        self.context = context
        self.adapter = adapter
        if lines is not None:
            self._throttle = lines
            self._ownLines = False
        policy = context.config.access
        self.access = policy.initialAccess()
        if policy.perStream:
            self.rights = policy.initialRights()

    @property
    def peer(self) -> str:
        return self.adapter.peer  # type: ignore[no-any-return]

    @property
    def outlet(self) -> Cursor | Mux | None:
        """
        What the client's frames are written through: its cursor, or the
        mux of a client of several streams.
        """
        return self.cursor if self.subscriptions is None else self.subscriptions.mux

    @property
    def messagesOut(self) -> int:
        """
        Messages handed to this client so far.
        """
        if self.subscriptions is not None:
            return self.subscriptions.messages
        return self.cursor.messages if self.cursor is not None else 0

    @property
    def bytesOut(self) -> int:
        """
        Bytes handed to this client so far.
        """
        outlet = self.outlet
        return outlet.written if outlet is not None else 0

    def mayRead(self, hub: Hub) -> bool:
        """
        Whether the client may be sent C{hub}'s stream.
        """
        return self.access is not Access.NONE and self.rights.reads(hub.name)

    @property
    def open(self) -> bool:
        """
        Whether the session may still send and take messages.
        """
        return self.state is SessionState.AWAITING or self.state is SessionState.STREAMING

    # The adapter's calls.

    def admit(self, host: Any = None) -> bool:
        """
        The client connected: count it among the daemon's connections, or
        refuse it over C{--max-clients}; start its timers.

        @param host: the HTTP connection (counted in the daemon's
            connections) whose request this session is, if any: it counts
            as this session until the session ends, then as itself again if
            it is still open.
        @return: whether it was admitted.
        """
        context = self.context
        connections = context.connections
        config = context.config
        hosted = host is not None and connections.discardChannel(host)
        limit = connections.full(config.maxClients)
        if limit is not None:
            if hosted:
                connections.addChannel(host)
            self.drop(Reason.MAX_CLIENTS, clients=len(connections), limit=limit)
            return False
        self.since = context.clock.seconds()
        self._admitted = True
        if hosted:
            self._host = host
        connections.add(self)
        stats = context.hub.stats
        stats.connections = len(connections)
        stats.connectionsTotal += 1
        if connections.connectedLines.admitOne():
            self.log.info(
                "{protocol} client {peer} connected ({n} connected)",
                protocol=self.adapter.protocol,
                peer=self.peer,
                n=len(connections),
            )
        clock = context.clock
        if self.access is Access.NONE:
            self._authCall = clock.callLater(config.authTimeout, self._authTimedOut)
        if config.idleTimeout is not None:
            self._idleCall = clock.callLater(config.idleTimeout, self._checkIdle, self.adapter.activity())
        return True

    def attach(self, cursor: Cursor) -> None:
        """
        The stream is written through C{cursor} (made with this session as
        its owner).
        """
        self.cursor = cursor

    def authenticate(self, token: bytes) -> bool:
        """
        The client presented C{token}: take the rights it grants, or drop
        the client if it grants none.

        @return: whether it was accepted.
        """
        _cancel(self._authCall)
        self._authCall = None
        policy = self.context.config.access
        self._digest = digest(token)
        granted = policy.accessForDigest(self._digest)
        if granted is Access.NONE:
            self.drop(Reason.AUTH_FAILED)
            return False
        wasReading = self.access is not Access.NONE
        self.access = max(self.access, granted)
        self.rights = policy.rightsForDigest(self._digest)
        if self.context.connections.connectedLines.admitOne():
            self.log.info("{peer} authenticated ({access})", peer=self.peer, access=self.access.name.lower())
        if not wasReading and self._request is not None:
            self._stream()
        return True

    def checkOrigin(self, origin: str | None, host: str | None) -> bool:
        """
        The client is a web page of C{origin} (or not a page, for C{None})
        that asked for C{host}: drop it unless that origin may connect.

        @return: whether it may.
        """
        if originAllowed(origin, host, self.context.config.httpOrigins):
            return True
        assert origin is not None
        self.drop(Reason.ORIGIN, origin=preview(origin.encode("utf-8", "replace")))
        return False

    def reauthorize(self) -> None:
        """
        The token files were read again: a client whose token no longer
        grants publishing may no longer publish, and the streams it may
        publish to and subscribe to from now on are those its token now
        names.  What it reads already is left as it is (see
        C{docs/security.rst}).
        """
        if self._digest is None:
            return
        policy = self.context.config.access
        self.rights = policy.rightsForDigest(self._digest)
        if self.access is not Access.PUBLISH:
            return
        if policy.accessForDigest(self._digest) is not Access.PUBLISH:
            self.access = Access.READ
            self.log.info("{peer} may no longer publish: the token files reloaded no longer grant it", peer=self.peer)

    def start(self, request: StartRequest = HEAD) -> None:
        """
        The client asks its stream (its listener's) to start as
        C{request}; it starts once the client may read.
        """
        self._request = request
        if self.access is not Access.NONE and self.state is SessionState.AWAITING:
            self._stream()

    def startStreams(self, direct: bool = False, afterTransport: bool = False) -> None:
        """
        The client will be sent several streams, each as it subscribes to
        it (L{subscribe}), once it may read; its frames go through a
        L{Mux} from now on.

        @param direct: whether the mux may send straight to the socket (a
            L{streamd.fanout.mux.SocketMux}).
        @param afterTransport: whether the transport may still hold what
            the protocol wrote itself (an HTTP answer), which must go
            first: a mux that sends to the socket then waits for it.
        """
        streams = self.context.streams
        assert streams is not None and self.subscriptions is None
        cursor, self.cursor = self.cursor, None
        if cursor is not None:
            cursor.abandon()
            cursor.transport.unregisterProducer()
        self.subscriptions = Subscriptions(
            self, streams, self.adapter.transport, self.identity, direct, afterTransport
        )
        self._request = MANY
        if self.access is not Access.NONE and self.state is SessionState.AWAITING:
            self._stream()

    def subscribe(
        self, subject: str, request: StartRequest = HEAD, positions: dict[str, StartRequest] | None = None
    ) -> None:
        """
        Send the client the stream C{subject}, or every stream the pattern
        C{subject} matches (those made later too), from C{request}; a
        resuming client's C{positions} say where each stream it knows
        resumes.  A subscription that cannot be served is refused in the
        transport's dialect.
        """
        subscriptions = self.subscriptions
        assert subscriptions is not None
        if self.state is SessionState.AWAITING:
            if self._pending is None:
                self._pending = []
            self._pending.append((subject, request, positions or {}))
            return
        if self.state is not SessionState.STREAMING:
            return
        if not isPattern(subject) and not self.rights.reads(subject):
            self._refuse(subject, f"this client may not read {subject!r}")
            return
        try:
            fresh = subscriptions.add(subject, request, positions or {})
        except (BadName, StreamRefused) as e:
            self._refuse(subject, str(e))
            return
        for hub in fresh:
            self.streamAppeared(hub, subscriptions.requestFor(hub, subject), subject)
        self._idleFromNow()
        self._pingFromNow()

    def unsubscribe(self, subject: str) -> None:
        """
        Stop what C{subject} subscribed to (the streams no other
        subscription of the client matches).
        """
        if self.subscriptions is not None:
            self.subscriptions.remove(subject)

    def streamAppeared(self, hub: Hub, request: StartRequest, subject: str) -> None:
        """
        Start C{hub}'s stream, which the subscription to C{subject}
        matches, from C{request}.
        """
        self._startAppeared(hub, request, subject)

    def _startAppeared(self, hub: Hub, request: StartRequest, subject: str, deadline: float | None = None) -> None:
        """
        L{streamAppeared}; while a cluster node catches up with the client's
        position, again and again until C{deadline}.
        """
        subscriptions = self.subscriptions
        if self.state is not SessionState.STREAMING or subscriptions is None or not subscriptions.awaits(hub):
            return
        cursor = Cursor(subscriptions.mux, hub, self.adapter.framingFor(hub), self)
        try:
            point = self._startPoint(hub, request)
        except PositionAhead as e:
            cursor.abandon()
            clock = self.context.clock
            if deadline is None:
                deadline = clock.seconds() + AHEAD_WAIT
            if hub.upstream is not None and clock.seconds() < deadline:
                clock.callLater(AHEAD_RETRY, self._startAppeared, hub, request, subject, deadline)
                return
            if isPattern(subject):
                subscriptions.forget(hub)
            else:
                subscriptions.remove(subject)
            self._refuse(
                subject,
                f"asked to resume {hub.name} after message {e.position}, beyond the newest, {e.newest}",
            )
            return
        subscriptions.started(hub, cursor)
        self._begin(cursor, point, request)

    def publish(
        self,
        payloads: Sequence[Payload],
        raw: bytes = b"",
        framing: Framing | None = None,
        received: int | None = None,
        size: int | None = None,
        stream: str | None = None,
        number: int = 0,
    ) -> Entry | None:
        """
        Publish C{payloads} the client sent, if it may: to its listener's
        stream, or to the stream named C{stream} (made if need be).

        @param raw: the same messages framed with C{framing} as they came,
            to relay as they are, or nothing.
        @param received: the bytes they came in, by default their payloads'.
        @param size: their payloads' bytes, if the caller knows (a flood then
            costs no work per message here).
        @param number: the publish number of the last of them, for a client
            that numbers its messages (see L{publishNumbered}).
        @return: their entry in the log, or C{None} if they were refused
            (the client is told why) or went to a cluster.
        """
        hub = self.context.hub
        sender: Cursor | Subscriptions | None = self.cursor
        rights = self.rights
        if self.access is not Access.PUBLISH or (
            rights is not ALL_STREAMS and not rights.publishes(hub.name if stream is None else stream)
        ):
            # Checked before the stream is made: a client may not make
            # streams it may not publish to.
            if stream is not None and self.access is Access.PUBLISH:
                self._refuse(stream, f"this client may not publish to {stream!r}")
                return None
            self.drop(Reason.READ_ONLY, count=len(payloads))
            return None
        if stream is not None:
            try:
                hub = self._publishingStream(stream)
            except (BadName, StreamRefused) as e:
                self._refuse(stream, str(e))
                return None
            sender = None if self.subscriptions is None else self.subscriptions.senderOn(hub)
        publishedTo = self._publishedTo
        if publishedTo is None or hub not in publishedTo:
            self._publishesTo(hub)
        if size is None:
            size = sum(map(len, payloads))
        # Send first and count after: the bookkeeping, and the few log lines
        # a second, do not delay the stream.
        try:
            entry = hub.publish(payloads, raw, framing if raw else None, sender, received, None, number)
        except DiskFull:
            self.drop(Reason.DISK_FULL, stream=hub.name)
            return None
        self.messagesIn += len(payloads)
        self.bytesIn += size if received is None else received
        throttle = self._throttle
        if throttle is None:
            throttle = self._throttle = LogThrottle(self.context.clock, self._reportUnlogged)
        for payload in throttle.admit(payloads, size):
            self.log.info(
                "{peer} sent {size} bytes: {preview}",
                peer=self.peer,
                size=len(payload),
                preview=preview(payload),
            )
        return entry

    def _publishesTo(self, hub: Hub) -> None:
        """
        The client publishes to C{hub} for the first time: the hub may
        pause it (see L{Hub.addPublisher}) until it leaves.
        """
        if self._publishedTo is None:
            self._publishedTo = {}
        self._publishedTo[hub] = None
        hub.addPublisher(self.adapter.transport, waits=False)

    def publishNumbered(
        self,
        payloads: Sequence[Payload],
        numbers: Sequence[int],
        acknowledge: Callable[[int, int], object],
        stream: str | None = None,
    ) -> None:
        """
        Publish C{payloads}, numbered C{numbers} by the client (one more
        each), but those a retransmission brings again, and call
        C{acknowledge(number, seq)} for the last once all of them are in
        the log, as durable as C{--fsync} makes them: C{seq} is its
        sequence number, 0 if an earlier connection published it and the
        log no longer says which.  Acknowledgements come in the order of
        the messages.  A client must name itself (its identity) to number.
        """
        if self.identity is None:
            self.drop(Reason.BAD_REQUEST, error="numbered its messages without an identity in its HELLO")
            return
        hub = self.context.hub
        if stream is not None:
            try:
                hub = self._publishingStream(stream)
            except (BadName, StreamRefused) as e:
                self._refuse(stream, str(e))
                return
        highest, seq = hub.history.publishers.highest(identityOf(self.identity))
        fresh = [payload for payload, number in zip(payloads, numbers, strict=True) if number > highest]
        last = numbers[-1]
        durable = None
        if fresh:
            entry = self.publish(
                fresh,
                stream=hub.name if stream is not None or self.subscriptions is not None else None,
                number=last,
            )
            if entry is None:
                return
            seq = lastOf(entry)
            durable = hub.history.whenDurable()
        elif last != highest:
            seq = 0
        if self._acks is None:
            self._acks = Acknowledgements(acknowledge, self._syncFailed)
        self._acks.add(last, seq, durable)

    def _syncFailed(self, failure: Failure) -> None:
        self.drop(Reason.DISK_FULL, stream=self.context.hub.name)

    def _publishingStream(self, name: str) -> Hub:
        streams = self.context.streams
        if streams is None:
            raise StreamRefused(f"no stream {name!r}: this listener serves one stream")
        return streams.open(name)

    def _refuse(self, subject: str, why: str) -> None:
        """
        Tell the client its subscription to (or message for) C{subject}
        is refused, or cut it if its transport cannot say so.
        """
        notice = self.adapter.refusal(subject, why)
        outlet = self.outlet
        if notice is None or outlet is None:
            self.drop(Reason.BAD_REQUEST, error=why)
            return
        outlet.sendPrivate(notice)

    def unfinished(self, held: int | None) -> bool:
        """
        The message the client began and has not finished holds C{held}
        bytes now, or (C{None}) it has none begun: the bytes count in the
        daemon's C{--max-partial-bytes} with every client's unfinished
        frames, and a message must be whole within L{MESSAGE_TIMEOUT}.

        @return: whether the client may go on; if not, it is dropped
            (C{max_partial}) and its message is to be let go.
        """
        budget = self.context.connections.partial
        before, self._held = self._held, held or 0
        if not budget.move(before, self._held):
            budget.move(self._held, 0)
            self._held = 0
            self.drop(Reason.MAX_PARTIAL, held=held, limit=budget.limit)
            return False
        if held is None:
            _cancel(self._messageCall)
            self._messageCall = None
        elif self._messageCall is None and self.open:
            self._messageCall = self.context.clock.callLater(self._messageTimeout(), self._messageTimedOut)
        return True

    def answered(self) -> None:
        """
        The client sent something: it answers the heartbeat.
        """
        self._unanswered = 0

    def pinged(self) -> bool:
        """
        The client sent a ping (a seq PING, a WebSocket ping) that no pong
        it took answers yet; past L{MAX_UNANSWERED_PINGS} of them it is cut
        (C{ping_flood}).

        @return: whether the session is still open.
        """
        self._unansweredPings += 1
        if self._unansweredPings > MAX_UNANSWERED_PINGS:
            self.drop(Reason.PING_FLOOD, count=self._unansweredPings)
        return self.open

    def pongTaken(self) -> None:
        """
        The client takes the pongs it is sent: its pings are answered.
        """
        self._unansweredPings = 0

    def drop(self, reason: Reason, **figures: Any) -> None:
        """
        Close the session for C{reason}: logged once (with the C{figures}
        its text names), counted once, and told to the client in its
        transport's dialect; aborted if the client has not taken that within
        L{BYE_GRACE} seconds.
        """
        if not self.open:
            return
        self.state = SessionState.CLOSING
        self.reason = reason
        self._stopTimers()
        context = self.context
        context.connections.dropped(context.hub.stats, self.peer, reason, **figures)
        told = self.adapter.goodbye(reason)
        self._abandon()
        if told and self.state is SessionState.CLOSING:
            self._graceCall = context.clock.callLater(BYE_GRACE, self.adapter.abort)

    def close(self) -> None:
        """
        The daemon is stopping: send what the client is behind by, then
        say so and close.
        """
        if not self.open:
            return
        outlet = self.outlet
        if outlet is None or outlet.closed or self.state is not SessionState.STREAMING:
            self.drop(Reason.SHUTDOWN)
            return
        _cancel(self._pingCall)
        self._pingCall = None
        outlet.close(then=lambda: self.drop(Reason.SHUTDOWN))

    def abort(self) -> None:
        """
        Close the connection now, whatever it is behind by.
        """
        self._abandon()
        self.adapter.abort()

    def _abandon(self) -> None:
        """
        Send nothing more.
        """
        outlet = self.outlet
        if outlet is not None:
            outlet.abandon()
        if self.subscriptions is not None:
            self.subscriptions.stop()

    def lost(self, why: str | Failure) -> None:
        """
        The connection is gone, for C{why} (when the daemon did not say): a
        text, or the failure the transport gave, read only if it is logged.
        """
        if self.state is SessionState.CLOSED:
            return
        self.state = SessionState.CLOSED
        self._stopTimers()
        _cancel(self._graceCall)
        if self._held:
            self.context.connections.partial.move(self._held, 0)
            self._held = 0
        if self._throttle is not None and self._ownLines:
            self._throttle.stop()
        self._abandon()
        context = self.context
        if self._publishedTo:
            for hub in self._publishedTo:
                hub.removePublisher(self.adapter.transport)
        # The cursors refer back to this session: let them all go with the
        # connection, not at the cycle collector's next collection.
        if self.cursor is not None:
            self.cursor.owner = DEPARTED
        if self.subscriptions is not None:
            for cursor in self.subscriptions.cursors.values():
                cursor.owner = DEPARTED
        if not self._admitted:
            return
        connections = context.connections
        connections.discard(self)
        host, self._host = self._host, None
        if host is not None and host.transport is not None and not host.transport.disconnecting:
            connections.addChannel(host)
        context.hub.stats.connections = len(connections)
        if connections.disconnectedLines.admitOne():
            self.log.info(
                "{protocol} client {peer} disconnected: {messagesIn} messages in, {messagesOut} out ({why})",
                protocol=self.adapter.protocol,
                peer=self.peer,
                messagesIn=self.messagesIn,
                messagesOut=self.messagesOut,
                why=self.reason.summary
                if self.reason is not None
                else why
                if isinstance(why, str)
                else why.getErrorMessage(),
            )
        connections.settle()

    # The cursors' owner.

    def slowConsumer(self, cursor: Cursor, reason: Reason, behind: int) -> None:
        """
        The hub finds this client too slow, by the rule C{reason}: a client
        whose position left the history is told the gap and goes on from
        the oldest message held, where its transport can say so and the
        daemon is not told to cut it (C{--seq-evicted disconnect}); any
        other is cut.
        """
        hub: Hub = cursor.hub  # type: ignore[assignment]
        flow = hub.flow
        if reason is Reason.EVICTED:
            history = hub.history
            start = history.start
            last = (history[start][FIRST] if start < history.end else history.nextSequence) - 1
            gap = Gap(cursor.nextSequence, last, GapReason.EVICTED)
            notice = self.adapter.gapNotice(gap, hub)
            if self.context.config.seqGaps and notice is not None:
                cursor.seek(start)
                new = cursor.sendGap(gap, lambda gap: self.adapter.gapNotice(gap, hub), before=start)
                if new and self.context.connections.droppedLines.admitOne():
                    self.log.warn(
                        "{peer} fell out of the --history{of}: skipping {n} messages ({first}-{last})",
                        peer=self.peer,
                        of=_of(hub),
                        n=gap.last - gap.first + 1,
                        first=gap.first,
                        last=gap.last,
                    )
                return
            self.drop(reason, behind=behind, history=flow.history)
        elif reason is Reason.MAX_PENDING:
            self.drop(reason, behind=behind, limit=flow.maxBehind)
        else:
            self.drop(reason, behind=behind, limit=flow.softBehind, seconds=flow.softSeconds)

    def streamGap(self, cursor: Cursor, first: int, last: int) -> None:
        """
        Messages C{first} to C{last} of a cluster's stream will never reach
        this node: tell the client, in order with the stream.
        """
        if self.state is SessionState.STREAMING:
            hub: Hub = cursor.hub  # type: ignore[assignment]
            gap = Gap(first, last, GapReason.CLUSTER)
            if self.adapter.gapNotice(gap, hub) is not None:
                cursor.sendGap(gap, lambda gap: self.adapter.gapNotice(gap, hub))

    def ownMessages(self, cursor: Cursor, first: int, last: int) -> None:
        """
        Messages C{first} to C{last} are the client's own, not sent back to
        it: tell it, where its transport needs that to count.
        """
        notice = self.adapter.ownNotice(first, last, cursor.hub)  # type: ignore[arg-type]
        if notice is not None:
            cursor.sendPrivate(notice)

    # Inside.

    def _stream(self) -> None:
        """
        Start streaming: subscribe to the listener's stream and send the
        greeting and what the client asked for, or, for a client of
        several streams, start those it asked for so far.
        """
        request = self._request
        assert request is not None
        if request is MANY:
            self.state = SessionState.STREAMING
            outlet = self.outlet
            assert outlet is not None
            outlet.sendPrivate(self.adapter.greeting(None, self.context.hub))
            pending, self._pending = self._pending or [], None
            for subject, start, positions in pending:
                self.subscribe(subject, start, positions)
            self._streaming()
            return
        cursor = self.cursor
        assert cursor is not None
        hub = self.context.hub
        if not self.rights.reads(hub.name):
            self.drop(Reason.FORBIDDEN, stream=hub.name)
            return
        try:
            point = self._startPoint(hub, request)
        except PositionAhead as e:
            self.drop(Reason.AHEAD, position=e.position, newest=e.newest)
            return
        self.state = SessionState.STREAMING
        self._begin(cursor, point, request)
        self._streaming()

    def _startPoint(self, hub: Hub, request: StartRequest) -> StartPoint:
        history = hub.history
        if request is HEAD:
            return StartPoint(history.end, 0, history.nextSequence)
        return startPosition(history, request)

    def _begin(self, cursor: Cursor, point: StartPoint, request: StartRequest) -> None:
        """
        Subscribe C{cursor} at C{point}: send the greeting, the rest of the
        entry the stream starts inside, and the log from there, as far as
        the connection takes them.
        """
        hub: Hub = cursor.hub  # type: ignore[assignment]
        greeting = self.adapter.greeting(point, hub)
        hub.subscribe(cursor)
        if not greeting and request is HEAD:
            return
        history = hub.history
        index = point.entry
        if greeting or index < history.end:
            if point.skip:
                entry = history[index]
                if entry[SENDER] != cursor.serial:
                    rest = history.payloads(entry)[point.skip :]
                    data = cursor.framing.encodeEntry(rest, entry[FIRST] + point.skip)
                    cursor.countMessages(len(rest), len(data))
                    greeting += data
                index += 1
            cursor.seek(index)
            cursor.sendPrivate(greeting, before=index)
            hub.cursorDrained(cursor)
            cursor.pump()
        if request is not HEAD and self.context.connections.startedLines.admitOne():
            self.log.info(
                "{peer} starts at message {seq}{of} ({start})",
                peer=self.peer,
                seq=point.next,
                of=_of(hub),
                start=request.start.name.lower(),
            )

    def _streaming(self) -> None:
        """
        The stream started: the idle timer runs from now, and the heartbeat.
        """
        self._idleFromNow()
        interval = self.context.config.heartbeat
        if interval and self.adapter.ping is not None:
            self._pingCall = self.context.clock.callLater(interval, self._heartbeat, self.bytesOut)

    def _idleFromNow(self) -> None:
        """
        The client is idle from now: asking for a stream was its activity.
        """
        idleTimeout = self.context.config.idleTimeout
        if self._idleCall is not None and idleTimeout is not None:
            _cancel(self._idleCall)
            self._idleCall = self.context.clock.callLater(
                idleTimeout, self._checkIdle, self.adapter.activity()
            )

    def _pingFromNow(self) -> None:
        """
        The heartbeat counts silence from now: what was just sent (a
        stream's announcement) was not silence.
        """
        interval = self.context.config.heartbeat
        if self._pingCall is not None and interval:
            _cancel(self._pingCall)
            self._pingCall = self.context.clock.callLater(interval, self._heartbeat, self.bytesOut)

    def _heartbeat(self, before: int) -> None:
        """
        Send the heartbeat to a client that was sent nothing since the last
        one; cut one that answered neither of the last two.
        """
        interval = self.context.config.heartbeat
        outlet = self.outlet
        assert interval and outlet is not None
        if self._unanswered >= 2:
            self._pingCall = None
            self.drop(Reason.NO_PONG, interval=interval)
            return
        if outlet.written == before:
            if self.adapter.pingAnswered:
                self._unanswered += 1
            outlet.sendPrivate(self.adapter.ping)
        self._pingCall = self.context.clock.callLater(interval, self._heartbeat, outlet.written)

    def _messageTimeout(self) -> float:
        idleTimeout = self.context.config.idleTimeout
        return MESSAGE_TIMEOUT if idleTimeout is None else min(MESSAGE_TIMEOUT, idleTimeout)

    def _messageTimedOut(self) -> None:
        self._messageCall = None
        self.drop(Reason.SLOW_MESSAGE, timeout=self._messageTimeout())

    def _authTimedOut(self) -> None:
        self._authCall = None
        self.drop(Reason.AUTH_TIMEOUT, timeout=self.context.config.authTimeout)

    def _checkIdle(self, before: tuple[int, int]) -> None:
        timeout = self.context.config.idleTimeout
        assert timeout is not None
        now = self.adapter.activity()
        if now != before:
            self._idleCall = self.context.clock.callLater(timeout, self._checkIdle, now)
            return
        self._idleCall = None
        self.drop(Reason.IDLE, timeout=timeout)

    def _reportUnlogged(self, messages: int, size: int) -> None:
        self.log.info(
            "{peer} sent {messages} more messages ({size} bytes) not logged one by one",
            peer=self.peer,
            messages=messages,
            size=size,
        )

    def _stopTimers(self) -> None:
        if self._authCall or self._idleCall or self._pingCall or self._messageCall:
            for call in (self._authCall, self._idleCall, self._pingCall, self._messageCall):
                _cancel(call)
            self._authCall = self._idleCall = self._pingCall = self._messageCall = None


def _of(hub: Hub) -> str:
    """
    Which stream a log line is about, when it is not the default.
    """
    return "" if hub.name == DEFAULT else f" of stream {hub.name}"


def _cancel(call: IDelayedCall | None) -> None:
    if call is not None and call.active():
        call.cancel()


__all__ = [
    "BYE_GRACE",
    "MESSAGE_TIMEOUT",
    "Connections",
    "ISessionAdapter",
    "Session",
    "SessionContext",
    "SessionState",
]
