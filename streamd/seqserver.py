"""
The daemon's side of a C{seq} listener (C{docs/protocol-seq.rst}): the
adapter that maps the C{seq} frames onto a client's L{Session}: numbered
messages, resuming after a reconnect, GAPs instead of cuts, heartbeats, and
a BYE that says why before every close.
"""

from __future__ import annotations

from streamd.fanout.history import FIRST
from streamd.fanout.resume import Gap, Start, StartPoint, StartRequest
from streamd.framing import Payload
from streamd.reasons import Reason
from streamd.seqframing import (
    BATCH_VERSION,
    SEQ_BATCH,
    VERSION,
    Auth,
    Bye,
    ClientHello,
    MalformedFrame,
    Ping,
    Pong,
    Pub,
    ServerHello,
    Unknown,
    decodeClientFrame,
    framed,
)
from streamd.server import TOKEN_LIMIT, FramedSessionProtocol, StreamServerFactory
from streamd.session import SessionState

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

    def sessionAdmitted(self) -> None:
        self.limitFrames(TOKEN_LIMIT + 1)

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        session = self.session
        greeted = False
        published: list[Payload] = []
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
            if isinstance(frame, Auth):
                if self.factory.config.access.expectsToken:
                    session.authenticate(frame.token)
            elif isinstance(frame, ClientHello) and self._hello is None:
                self._helloReceived(frame)
                greeted = True
            elif self._hello is None or isinstance(frame, (ClientHello, Pub)):
                when = "before HELLO" if self._hello is None else "out of turn"
                session.drop(Reason.BAD_REQUEST, error=f"sent {_name(frame)} {when}")
                return
            elif isinstance(frame, Ping) and streaming:
                self.cursor.sendPrivate(PONG_FRAME)
        if published:
            self._publishFrames(published)
        if greeted and session.open:
            # The HELLO raised the frame limit: a large PUB that came with it
            # in this read is taken.
            self.limitRaised()

    def _helloReceived(self, hello: ClientHello) -> None:
        if hello.version < 1 or hello.start not in _STARTS:
            self.session.drop(Reason.BAD_REQUEST, error=f"sent a HELLO this server cannot serve: {hello}")
            return
        self._hello = hello
        if hello.identity.strip(b"\0"):
            self.cursor.serial = identitySerial(hello.identity)
        if min(hello.version, VERSION) >= BATCH_VERSION:
            # Before it subscribes: the hub serves each cursor by its framing.
            self.cursor.framing = SEQ_BATCH
        self.session.start(StartRequest(Start(hello.start), hello.epoch, hello.position))

    def _publishFrames(self, payloads: list[Payload]) -> None:
        size = sum(map(len, payloads))
        self.session.publish(payloads, received=size + len(payloads) * (1 + self.framing.headerSize), size=size)

    def greeting(self, point: StartPoint) -> bytes:
        """
        HELLO, and the GAP the stream starts after, if any; frames may now
        be as large as messages.
        """
        hello = self._hello
        assert hello is not None
        self.limitFrames(self.MAX_LENGTH + 1)
        config = self.factory.config
        history = self.factory.hub.history
        oldestEntry = history.oldestEntry()
        newest = history.nextSequence - 1
        greeting = framed(
            ServerHello(
                min(hello.version, VERSION),
                history.epoch,
                newest + 1 if oldestEntry is None else oldestEntry[FIRST],
                newest,
                round((config.heartbeat or 0) * 1000),
                config.maxMessageSize,
            )
        )
        if point.gap is not None:
            greeting += framed(point.gap)
        return greeting

    def gapNotice(self, gap: Gap) -> bytes:
        return framed(gap)

    def goodbye(self, reason: Reason) -> bool:
        """
        A BYE after the frame begun, then close.
        """
        self.cursor.sendFinal(byeFrame(reason))
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
