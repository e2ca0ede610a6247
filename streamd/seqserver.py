"""
The daemon's side of a C{seq} listener (C{docs/protocol-seq.rst}): the
adapter that maps the C{seq} frames onto a client's L{Session}: numbered
messages, resuming after a reconnect, GAPs instead of cuts, heartbeats, and
a BYE that says why before every close.
"""

from __future__ import annotations

from streamd.fanout.history import FIRST
from streamd.fanout.hub import Hub
from streamd.fanout.resume import Gap, Start, StartPoint, StartRequest
from streamd.framing import Framing, Payload
from streamd.reasons import Reason
from streamd.seqframing import (
    ACK_VERSION,
    BATCH_VERSION,
    PING_VERSION,
    SEQ_BATCH,
    STREAMS_VERSION,
    VERSION,
    Ack,
    Auth,
    Bye,
    ClientHello,
    MalformedFrame,
    Ping,
    Pong,
    Pub,
    PubN,
    Refused,
    ServerHello,
    SGap,
    SPub,
    SPubN,
    StreamFraming,
    StreamStart,
    Sub,
    Unknown,
    Unsub,
    decodeClientFrame,
    framed,
)
from streamd.server import TOKEN_LIMIT, FramedSessionProtocol, StreamServerFactory
from streamd.session import SessionState

NUMBERED_OVERHEAD = 8 + 256
"""
Bytes a numbered publish's frame may have beyond its message: its number,
and a stream's name with its length.
"""

PING_FRAME = framed(Ping())
PONG_FRAME = framed(Pong())
_STARTS = frozenset(Start)


def byeFrame(reason: Reason) -> bytes:
    """
    The BYE frame for C{reason}.
    """
    return framed(Bye(reason.value, reason.summary))


def identitySerial(identity: bytes) -> int:
    """
    The publisher serial of the connections of a client that names itself
    C{identity} in its HELLO: the same on each, so that what it published on
    one is not sent back to it on the next, and negative, so never that of
    another connection (counted from 1) or of the daemon's sources (0).
    """
    return -1 - int.from_bytes(identity, "big")


class SeqServerProtocol(FramedSessionProtocol):
    """
    One client of a C{seq} listener.

    Until its HELLO (and its AUTH, when a token is asked for) it may send
    only small frames, AUTH and HELLO, and is sent nothing.
    """

    ping = PING_FRAME
    pingAnswered = True
    _hello: ClientHello | None = None
    _version = 0
    _writtenAtPing = 0

    def sessionAdmitted(self) -> None:
        self.limitFrames(TOKEN_LIMIT + 1)

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        session = self.session
        greeted = False
        published: list[Payload] = []
        numbered: list[Payload] = []
        numbers: list[int] = []
        # A run of SPUBs to one stream is published together, as PUBs are.
        named: list[Payload] = []
        namedStream = ""
        for payload in payloads:
            if not session.open:
                return
            try:
                frame = decodeClientFrame(payload)
            except MalformedFrame as e:
                session.drop(Reason.BAD_FRAME, error=f"sent a malformed frame: {e}")
                return
            session.answered()
            streaming = session.state is SessionState.STREAMING
            if isinstance(frame, Pub):
                if len(payload) > self.MAX_LENGTH + 1:
                    # Framed in one read with the HELLO, under the limit that
                    # holds before it (a token's), not --max-message-size.
                    self.lengthLimitExceeded(len(payload))
                    return
                if streaming:
                    published.append(memoryview(payload)[1:])
                    continue
            if published:
                self._publishFrames(published)
                published = []
            if isinstance(frame, SPub) and streaming and self._version >= STREAMS_VERSION:
                if len(frame.payload) > self.MAX_LENGTH:
                    self.lengthLimitExceeded(len(frame.payload))
                    return
                if named and frame.stream != namedStream:
                    session.publish(named, stream=namedStream)
                    named = []
                named.append(frame.payload)
                namedStream = frame.stream
                continue
            if named:
                session.publish(named, stream=namedStream)
                named = []
            if isinstance(frame, PubN) and streaming and self._version >= ACK_VERSION:
                if len(frame.payload) > self.MAX_LENGTH:
                    self.lengthLimitExceeded(len(frame.payload))
                    return
                numbered.append(frame.payload)
                numbers.append(frame.number)
                continue
            if numbered:
                session.publishNumbered(numbered, numbers, self._acknowledge)
                numbered, numbers = [], []
            if isinstance(frame, Auth):
                if self.factory.config.access.expectsToken:
                    session.authenticate(frame.token)
            elif isinstance(frame, ClientHello) and self._hello is None:
                self._helloReceived(frame)
                greeted = True
            elif self._hello is None or isinstance(frame, (ClientHello, Pub, PubN, SPub)):
                when = "before HELLO" if self._hello is None else "out of turn"
                session.drop(Reason.BAD_REQUEST, error=f"sent {_name(frame)} {when}")
                return
            elif isinstance(frame, Ping) and streaming:
                if self._version >= PING_VERSION:
                    self._pingReceived()
            elif self._version >= STREAMS_VERSION:
                self._streamFrameReceived(frame)
        if published:
            self._publishFrames(published)
        if named and session.open:
            session.publish(named, stream=namedStream)
        if numbered and session.open:
            session.publishNumbered(numbered, numbers, self._acknowledge)
        if greeted and session.open:
            # The HELLO raised the frame limit: a large PUB that came with it
            # in this read is taken.
            self.limitRaised()

    def _helloReceived(self, hello: ClientHello) -> None:
        version = min(
            hello.version, VERSION if self.factory.context.streams is not None else STREAMS_VERSION - 1
        )
        if (
            hello.version < 1
            or hello.start not in _STARTS
            or (hello.start == Start.NONE and version < STREAMS_VERSION)
            or (hello.start == Start.SINCE and version < ACK_VERSION)
        ):
            self.session.drop(Reason.BAD_REQUEST, error=f"sent a HELLO this server cannot serve: {hello}")
            return
        self._hello = hello
        self._version = version
        serial = identitySerial(hello.identity) if hello.identity.strip(b"\0") else None
        request = StartRequest(Start(hello.start), hello.epoch, hello.position)
        if version >= STREAMS_VERSION:
            self.session.identity = serial
            # Nothing was written but through the session: its mux may
            # send straight to the socket.
            self.session.startStreams(direct=True)
            if request.start is not Start.NONE:
                self.session.subscribe(self.factory.hub.name, request)
            return
        if serial is not None:
            self.cursor.serial = serial
        if version >= BATCH_VERSION:
            # Before it subscribes: the hub serves each cursor by its framing.
            self.cursor.framing = SEQ_BATCH
        self.session.start(request)

    def _streamFrameReceived(self, frame: object) -> None:
        """
        A version 4 client's SUB or UNSUB, or a version 5 one's SPUBN.
        """
        session = self.session
        if isinstance(frame, Sub):
            positions = {p.name: StartRequest(Start.RESUME, p.epoch, p.seq) for p in frame.positions}
            if (
                frame.start not in _STARTS
                or frame.start == Start.NONE
                or (frame.start == Start.SINCE and self._version < ACK_VERSION)
            ):
                session.drop(Reason.BAD_REQUEST, error=f"sent a SUB this server cannot serve: {frame}")
                return
            session.subscribe(
                frame.subject, StartRequest(Start(frame.start), frame.epoch, frame.position), positions
            )
        elif isinstance(frame, Unsub):
            session.unsubscribe(frame.subject)
        elif isinstance(frame, SPubN) and self._version >= ACK_VERSION:
            if len(frame.payload) > self.MAX_LENGTH:
                self.lengthLimitExceeded(len(frame.payload))
                return
            session.publishNumbered([frame.payload], [frame.number], self._acknowledge, frame.stream)

    def _pingReceived(self) -> None:
        """
        Answer a PING with a PONG, in order with the stream; cut a client
        that sends more than L{streamd.session.MAX_UNANSWERED_PINGS} while its connection
        takes nothing (PONGs are held for it, and nothing was written since
        its last PING), so that a client that does not read holds no more
        of them than that, and one catching up at full speed is not cut.
        """
        session = self.session
        outlet = session.outlet
        assert outlet is not None
        written, self._writtenAtPing = self._writtenAtPing, outlet.written
        if not outlet.held or outlet.written != written:
            session.pongTaken()
        elif not session.pinged():
            return
        outlet.sendPrivate(PONG_FRAME)

    def _acknowledge(self, number: int, seq: int) -> None:
        """
        Tell the client its messages up to C{number} are in the log.
        """
        outlet = self.session.outlet
        if outlet is not None and self.session.open:
            outlet.sendPrivate(framed(Ack(number, seq)))

    def _publishFrames(self, payloads: list[Payload]) -> None:
        size = sum(map(len, payloads))
        # A version 4 client's PUBs are its listener's stream's too.
        stream = self.factory.hub.name if self._version >= STREAMS_VERSION else None
        received = size + len(payloads) * (1 + self.framing.headerSize)
        self.session.publish(payloads, received=received, size=size, stream=stream)

    def greeting(self, point: StartPoint | None, hub: Hub) -> bytes:
        """
        HELLO, and the GAP the stream starts after, if any; frames may now
        be as large as messages.  A version 4 client is sent its HELLO
        first (C{point} is C{None}), then a STREAM (and an SGAP) as each
        stream starts.
        """
        hello = self._hello
        assert hello is not None
        history = hub.history
        oldestEntry = history.oldestEntry()
        newest = history.nextSequence - 1
        oldest = newest + 1 if oldestEntry is None else oldestEntry[FIRST]
        if point is not None and self._version >= STREAMS_VERSION:
            start = framed(StreamStart(hub.number, hub.name, history.epoch, oldest, newest, point.next))
            return start + (b"" if point.gap is None else self.gapNotice(point.gap, hub))
        self.limitFrames(self.MAX_LENGTH + 1 + (NUMBERED_OVERHEAD if self._version >= ACK_VERSION else 0))
        config = self.factory.config
        greeting = framed(
            ServerHello(
                self._version,
                history.epoch,
                oldest,
                newest,
                round((config.heartbeat or 0) * 1000),
                config.maxMessageSize,
            )
        )
        if point is not None and point.gap is not None:
            greeting += framed(point.gap)
        return greeting

    def gapNotice(self, gap: Gap, hub: Hub) -> bytes:
        if self._version >= STREAMS_VERSION:
            return framed(SGap(hub.number, gap.first, gap.last, gap.reason))
        return framed(gap)

    def framingFor(self, hub: Hub) -> Framing:
        return hub.framing(StreamFraming, lambda: StreamFraming(hub.number))

    def refusal(self, subject: str, why: str) -> bytes:
        return framed(Refused(subject[:255], why))

    def goodbye(self, reason: Reason) -> bool:
        """
        A BYE after the frame begun, then close.
        """
        outlet = self.session.outlet
        assert outlet is not None
        outlet.sendFinal(byeFrame(reason))
        return True


def _name(frame: object) -> str:
    """
    A frame's name as the spec writes it: C{PUB}, or C{frame type 42}.
    """
    if isinstance(frame, Unknown):
        return f"frame type {frame.type}"
    return type(frame).__name__.upper()


class SeqServerFactory(StreamServerFactory):
    """
    Makes a L{SeqServerProtocol} for each client of one C{seq} listener.
    """

    protocol = SeqServerProtocol


__all__ = ["SeqServerFactory", "SeqServerProtocol", "byeFrame", "identitySerial"]
