"""
The streams one session is sent when it may be sent several (a C{seq}
client of version 4, a web client of C{/ws/NAME} or C{/events/NAME}): its
subscriptions, by name or by pattern, and one cursor per stream, however
many of them match it, all writing through the connection's L{Mux}.

A pattern subscription is told of the streams made after it (it is a
L{streamd.fanout.streams.StreamWatcher}); nothing here runs per message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from streamd.fanout.cursor import Cursor, newSerial
from streamd.fanout.hub import Hub
from streamd.fanout.mux import Mux, SocketMux
from streamd.fanout.resume import Start, StartRequest
from streamd.fanout.socketcursor import sendsToSocket
from streamd.fanout.streams import Streams
from streamd.names import checkPattern, isPattern, matches

if TYPE_CHECKING:
    from streamd.session import Session

FROM_OLDEST = StartRequest(Start.LAST, position=2**64 - 1)
"""
Where a stream starts that a subscription did not know of: its first
message held (a stream made after the subscription, or one a resuming
client has no position in).
"""


class Subscriptions:
    """
    A session's subscriptions and the cursors they need (see the module);
    the publisher of what it sends to streams it is not sent.

    @ivar cursors: the session's cursor on each stream it is sent.
    @ivar serial: the publisher serial of all of them (the client's own
        messages are not sent back to it on any stream).
    """

    def __init__(
        self,
        session: Session,
        streams: Streams,
        transport: object,
        serial: int | None = None,
        direct: bool = False,
        afterTransport: bool = False,
    ) -> None:
        self.session: Session | None = session
        self.streams = streams
        self.serial = newSerial() if serial is None else serial
        self.mux = SocketMux(transport, afterTransport) if direct and sendsToSocket(transport) else Mux(transport)
        self.cursors: dict[Hub, Cursor] = {}
        self._requests: dict[str, StartRequest] = {}
        self._patterns: set[str] = set()
        self._positions: dict[str, StartRequest] = {}
        # Which subscriptions match each stream sent, and the other way.
        self._covering: dict[Hub, set[str]] = {}
        self._covered: dict[str, set[Hub]] = {}

    @property
    def written(self) -> int:
        return self.mux.written

    @property
    def messages(self) -> int:
        return sum(cursor.messages for cursor in self.cursors.values())

    def add(self, subject: str, request: StartRequest, positions: dict[str, StartRequest]) -> list[Hub]:
        """
        Subscribe to C{subject} (a name or a pattern), from C{request}; a
        resuming client's C{positions} say where each stream it knows
        resumes (the others of a resumed subscription start at their
        oldest message).

        @return: the streams to start now (those it matches that the
            session is not sent yet); L{started} for each once it has a
            cursor.
        @raise streamd.names.BadName: for a subject that is neither.
        @raise streamd.fanout.streams.StreamRefused: for a stream that
            cannot be made.
        """
        checkPattern(subject)
        if subject in self._requests:
            return []
        if isPattern(subject):
            hubs = self.streams.watch(subject, self)
            self._patterns.add(subject)
        else:
            hubs = [self.streams.open(subject)]
        self._requests[subject] = request
        self._positions.update(positions)
        fresh = []
        session = self.session
        assert session is not None
        for hub in hubs:
            if session.mayRead(hub):
                if hub not in self._covering:
                    fresh.append(hub)
                self._cover(hub, subject)
        return fresh

    def _cover(self, hub: Hub, subject: str) -> None:
        self._covering.setdefault(hub, set()).add(subject)
        self._covered.setdefault(subject, set()).add(hub)

    def awaits(self, hub: Hub) -> bool:
        """
        Whether a subscription of the client matches C{hub}'s stream, which
        it is not sent yet.
        """
        return hub in self._covering and hub not in self.cursors

    def requestFor(self, hub: Hub, subject: str) -> StartRequest:
        """
        Where C{hub}'s stream starts for a subscription to C{subject}.
        """
        known = self._positions.pop(hub.name, None)
        if known is not None:
            return known
        request = self._requests[subject]
        if request.start is Start.RESUME and isPattern(subject):
            return FROM_OLDEST
        return request

    def started(self, hub: Hub, cursor: Cursor) -> None:
        cursor.serial = self.serial
        self.cursors[hub] = cursor
        self.mux.add(cursor)

    def senderOn(self, hub: Hub) -> Cursor | Subscriptions:
        """
        Who publishes to C{hub}'s stream for this client: its cursor there,
        which is then told, or this.
        """
        return self.cursors.get(hub, self)

    def published(self, entry: object) -> None:
        """
        Messages this client published to a stream it is not sent.
        """

    def forget(self, hub: Hub) -> None:
        """
        C{hub}'s stream could not be started: a subscription that matches
        it again may start it.
        """
        for subject in self._covering.pop(hub, ()):
            self._covered[subject].discard(hub)

    def remove(self, subject: str) -> None:
        """
        Unsubscribe from C{subject}: the streams no other subscription
        matches stop (after the entry begun).
        """
        if self._requests.pop(subject, None) is None:
            return
        if subject in self._patterns:
            self._patterns.discard(subject)
            self.streams.unwatch(subject, self)
        for hub in self._covered.pop(subject, ()):
            covering = self._covering[hub]
            covering.discard(subject)
            if not covering:
                del self._covering[hub]
                cursor = self.cursors.pop(hub, None)
                if cursor is not None:
                    self.mux.remove(cursor)

    def streamAppeared(self, hub: Hub) -> None:
        """
        A stream that some of the session's patterns match was made.
        """
        covering = sorted(subject for subject in self._patterns if matches(subject, hub.name))
        session = self.session
        if not covering or hub in self._covering or session is None or not session.mayRead(hub):
            return
        for subject in covering:
            self._cover(hub, subject)
        session.streamAppeared(hub, self.requestFor(hub, covering[0]), covering[0])

    def stop(self) -> None:
        """
        The session ended: no more streams are made for it, and this lets
        go of it (which refers to this), so both go with the connection.
        """
        for subject in self._patterns:
            self.streams.unwatch(subject, self)
        self._patterns.clear()
        self._requests.clear()
        self.session = None
