"""
The daemon's side of a C{seq} listener (C{docs/protocol-seq.rst}): numbered
messages, resuming after a reconnect, GAPs instead of cuts, heartbeats, and a
BYE that says why before every close.
"""

from __future__ import annotations

from dataclasses import dataclass

from twisted.internet.interfaces import IAddress, IDelayedCall
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure

from streamd.framing import FrameError, Payload
from streamd.history import FIRST, SENDER, History
from streamd.reasons import Reason
from streamd.seqframing import (
    BATCH_VERSION,
    SEQ,
    SEQ_BATCH,
    VERSION,
    Auth,
    Bye,
    ClientHello,
    Gap,
    GapReason,
    MalformedFrame,
    Ping,
    Pub,
    ServerHello,
    Start,
    decodeClientFrame,
    framed,
)
from streamd.server import TOKEN_LIMIT, StreamServerFactory, StreamServerProtocol

BYE_GRACE = 5.0
"""
Seconds a client has to take its BYE before the connection is aborted.
"""

BYE_TEXT = {
    Reason.EVICTED: "fell out of the history",
    Reason.MAX_PENDING: "too far behind (--max-pending)",
    Reason.SOFT_PENDING: "too far behind for too long (--soft-pending)",
    Reason.OVERSIZED_FRAME: "sent a frame over the size limit",
    Reason.BAD_FRAME: "sent a malformed frame",
    Reason.AUTH_FAILED: "wrong token",
    Reason.AUTH_TIMEOUT: "no token in time (--auth-timeout)",
    Reason.READ_ONLY: "this client may not publish",
    Reason.IDLE: "idle (--idle-timeout)",
    Reason.MAX_CLIENTS: "too many clients (--max-clients)",
    Reason.SHUTDOWN: "the daemon is shutting down",
    Reason.MAX_PARTIAL: "too much of a partial frame held",
    Reason.NO_PONG: "did not answer two PINGs (--heartbeat)",
    Reason.BAD_REQUEST: "sent a frame the protocol does not allow here",
}
"""
The text of each reason's BYE.
"""

PING_FRAME = framed(Ping())
_STARTS = frozenset(Start)


def byeFrame(reason: Reason) -> bytes:
    """
    The BYE frame for C{reason}.
    """
    return framed(Bye(reason.value, BYE_TEXT[reason]))


def identitySerial(identity: bytes) -> int:
    """
    The publisher serial of the connections of a client that names itself
    C{identity} in its HELLO: the same on each, so that what it published on
    one is not sent back to it on the next, and negative, so never that of
    another connection (counted from 1) or of the daemon's sources (0).
    """
    return -1 - int.from_bytes(identity, "big")


@dataclass(frozen=True)
class Resume:
    """
    Where a client's stream starts: the messages of entry C{index} from
    its C{skip}th on, after a C{gap} if some it asked for are gone.
    """

    index: int
    skip: int
    gap: Gap | None


def resumePoint(history: History, hello: ClientHello) -> Resume:
    """
    Where the stream starts for a client that said C{hello}.
    """
    newest = history.nextSequence - 1
    if hello.start == Start.RESUME and not history.numbers(hello.epoch):
        return Resume(history.end, 0, Gap(1, newest, GapReason.RESTARTED))
    if hello.start == Start.RESUME:
        after = min(hello.position, newest)
    elif hello.start == Start.LAST:
        after = max(newest - hello.position, 0)
    else:
        after = newest
    oldestEntry = history.oldestEntry()
    oldest = newest + 1 if oldestEntry is None else oldestEntry[FIRST]
    gap = None
    if after + 1 < oldest:
        gap = Gap(after + 1, oldest - 1, GapReason.EVICTED)
        after = oldest - 1
    index = history.find(after + 1)
    skip = 0
    if index < history.end:
        first = history[index][FIRST]
        if first > after + 1 and gap is None:
            # A hole of a cluster's stream: messages this node never got.
            gap = Gap(after + 1, first - 1, GapReason.CLUSTER)
        skip = max(after + 1 - first, 0)
    return Resume(index, skip, gap)


class SeqServerProtocol(StreamServerProtocol):
    """
    One client of a C{seq} listener.

    Until its HELLO (and its AUTH, when a token is asked for) it may send
    only small frames, and is sent nothing.
    """

    factory: SeqServerFactory
    _hello: ClientHello | None = None
    _reading = False
    _started = False
    _unanswered = 0
    _pingCall: IDelayedCall | None = None
    _graceCall: IDelayedCall | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self.limitFrames(TOKEN_LIMIT + 1)

    def _awaitToken(self) -> None:
        # The token comes in an AUTH frame, among the others.
        pass

    def _mayRead(self) -> None:
        self._reading = True
        if self._hello is not None:
            self._start()

    def framesReceived(self, payloads: list[Payload], raw: bytes) -> None:
        published: list[Payload] = []
        for payload in payloads:
            if self.cursor.closed:
                return
            try:
                frame = decodeClientFrame(payload)
            except MalformedFrame as e:
                self._refuse(Reason.BAD_FRAME, str(e))
                return
            self._unanswered = 0
            if isinstance(frame, Pub) and len(payload) > self.MAX_LENGTH + 1:
                # Framed in one read with the HELLO, under the limit that
                # holds before it (a token's), not --max-message-size.
                self.lengthLimitExceeded(len(payload))
                return
            if isinstance(frame, Pub) and self._started:
                published.append(memoryview(payload)[1:])
                continue
            if published:
                self._publishFrames(published)
                published = []
            if isinstance(frame, ClientHello) and self._hello is None:
                if frame.version < 1 or frame.start not in _STARTS:
                    self._refuse(Reason.BAD_REQUEST, f"sent a HELLO this server cannot serve: {frame}")
                    return
                self._hello = frame
                if frame.identity.strip(b"\0"):
                    self.cursor.serial = identitySerial(frame.identity)
                if self._reading:
                    self._start()
            elif isinstance(frame, Auth):
                if self.factory.config.access.expectsToken:
                    self._authenticate(frame.token)
            elif isinstance(frame, (ClientHello, Pub)):
                self._refuse(Reason.BAD_REQUEST, f"sent {type(frame).__name__.upper()} out of turn")
                return
        if published:
            self._publishFrames(published)

    def _publishFrames(self, payloads: list[Payload]) -> None:
        size = sum(map(len, payloads))
        self._publish(payloads, b"", size + len(payloads) * (1 + self.framing.headerSize), size)

    def _start(self) -> None:
        """
        Send HELLO, and the stream from where the client asked.
        """
        hello = self._hello
        assert hello is not None
        self._started = True
        self.limitFrames(self.MAX_LENGTH + 1)
        config = self.factory.config
        hub = self.factory.hub
        history = hub.history
        resume = resumePoint(history, hello)
        oldestEntry = history.oldestEntry()
        newest = history.nextSequence - 1
        version = min(hello.version, VERSION)
        cursor = self.cursor
        if version >= BATCH_VERSION:
            # Before it subscribes: the hub serves each cursor by its framing.
            cursor.framing = SEQ_BATCH
        greeting = [
            framed(
                ServerHello(
                    version,
                    history.epoch,
                    newest + 1 if oldestEntry is None else oldestEntry[FIRST],
                    newest,
                    round((config.heartbeat or 0) * 1000),
                )
            )
        ]
        if resume.gap is not None:
            greeting.append(framed(resume.gap))
        index = resume.index
        if resume.skip:
            entry = history[index]
            if entry[SENDER] != self.cursor.serial:
                greeting.append(SEQ.encodeEntry(history.payloads(entry)[resume.skip :], entry[FIRST] + resume.skip))
            index += 1
        self.log.info(
            "{peer} starts at message {seq} ({start})",
            peer=self.peer,
            seq=history[index][FIRST] if index < history.end else history.nextSequence,
            start=Start(hello.start).name.lower(),
        )
        hub.subscribe(cursor)
        cursor.seek(index)
        cursor.sendPrivate(b"".join(greeting), before=index)
        hub.cursorDrained(cursor)
        cursor.pump()
        if config.heartbeat:
            self._pingCall = self.factory.clock.callLater(config.heartbeat, self._heartbeat, cursor.written)

    def _heartbeat(self, before: int) -> None:
        """
        PING a client that was sent nothing for a heartbeat; cut one that
        answered neither of the last two.
        """
        interval = self.factory.config.heartbeat
        assert interval is not None
        if self._unanswered >= 2:
            self._pingCall = None
            self.log.warn(
                "{peer} answered none of two PINGs (--heartbeat {interval:g} s); disconnecting",
                peer=self.peer,
                interval=interval,
            )
            self._drop(Reason.NO_PONG)
            return
        cursor = self.cursor
        if cursor.written == before:
            self._unanswered += 1
            cursor.sendPrivate(PING_FRAME)
        self._pingCall = self.factory.clock.callLater(interval, self._heartbeat, cursor.written)

    def slowConsumer(self, reason: Reason, behind: int) -> None:
        if reason is not Reason.EVICTED or not self.factory.config.seqGaps:
            super().slowConsumer(reason, behind)
            return
        cursor = self.cursor
        history = self.factory.hub.history
        start = history.start
        first = cursor.nextSequence
        last = (history[start][FIRST] if start < history.end else history.nextSequence) - 1
        self.log.warn(
            "{peer} fell out of the --history: skipping {n} messages ({first}-{last})",
            peer=self.peer,
            n=last - first + 1,
            first=first,
            last=last,
        )
        cursor.seek(start)
        cursor.sendPrivate(framed(Gap(first, last, GapReason.EVICTED)), before=start)

    def streamGap(self, first: int, last: int) -> None:
        """
        Messages C{first} to C{last} will never be here: a GAP, in order
        with the stream (the hub's call, see L{Hub.gap}).
        """
        if self._started:
            self.cursor.sendPrivate(framed(Gap(first, last, GapReason.CLUSTER)))

    def _refuse(self, reason: Reason, why: str) -> None:
        self.log.warn("{peer} {why}; disconnecting", peer=self.peer, why=why)
        self.factory.hub.stats.badFrameDisconnects += 1
        self._drop(reason)

    def lengthLimitExceeded(self, length: int) -> None:
        self.log.warn(
            "{peer} announced a {length}-byte frame, over the {limit}-byte limit; disconnecting",
            peer=self.peer,
            length=length,
            limit=self.frameLimit,
        )
        self.factory.hub.stats.oversizedFrameDisconnects += 1
        self._drop(Reason.OVERSIZED_FRAME)

    def frameErrorReceived(self, error: FrameError) -> None:
        self._refuse(Reason.BAD_FRAME, str(error))

    def _drop(self, reason: Reason) -> None:
        """
        Send a BYE for C{reason} after the frame begun, then close; abort if
        the client has not taken it within L{BYE_GRACE} seconds.
        """
        self._stopHeartbeat()
        if self.cursor.closed:
            self.abort()
            return
        self.cursor.sendFinal(byeFrame(reason))
        self._graceCall = self.factory.clock.callLater(BYE_GRACE, self.transport.abortConnection)

    def close(self) -> None:
        """
        Send what this client is behind by, then BYE SHUTDOWN, then close:
        the BYE is the last frame, even if others publish meanwhile.
        """
        self._stopHeartbeat()
        self.cursor.close(then=self._sayShutdown)

    def _sayShutdown(self) -> None:
        self.cursor.sendFinal(byeFrame(Reason.SHUTDOWN))

    def _stopHeartbeat(self) -> None:
        if self._pingCall is not None and self._pingCall.active():
            self._pingCall.cancel()
        self._pingCall = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopHeartbeat()
        if self._graceCall is not None and self._graceCall.active():
            self._graceCall.cancel()
        super().connectionLost(reason)


class SeqServerFactory(StreamServerFactory):
    """
    Makes a L{SeqServerProtocol} for each client of one C{seq} listener.
    """

    protocol = SeqServerProtocol

    def buildProtocol(self, addr: IAddress) -> Protocol:  # type: ignore[override]
        protocol = super().buildProtocol(addr)
        if isinstance(protocol, SeqServerProtocol):
            return protocol
        return _RefusedWithBye()


class _RefusedWithBye(Protocol):
    """
    A C{seq} connection over --max-clients: told so, and closed.
    """

    def connectionMade(self) -> None:
        transport = self.transport
        assert transport is not None
        transport.write(byeFrame(Reason.MAX_CLIENTS))  # refused: no cursor, nothing else writes
        transport.loseConnection()


__all__ = ["SeqServerFactory", "SeqServerProtocol", "identitySerial", "resumePoint"]
