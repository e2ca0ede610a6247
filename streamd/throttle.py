"""
Rate limiting for per-message log lines, so that a flood never makes logging
the bottleneck.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from streamd.framing import Payload

_NONE: tuple[Payload, ...] = ()
_ONE: tuple[Payload, ...] = (b"",)


class LogThrottle:
    """
    Admits at most C{perSecond} log lines in each one-second window; what it
    holds back is summed and reported once, when the window ends.

    @param report: called with the number of messages and bytes that were not
        logged in a window that held some back.
    """

    def __init__(
        self,
        clock: IReactorTime,
        report: Callable[[int, int], None],
        perSecond: int = 10,
    ) -> None:
        self._clock = clock
        self._report = report
        self._perSecond = perSecond
        self._windowStart = -1.0
        self._admitted = 0
        self._heldMessages = 0
        self._heldBytes = 0
        self._summary: IDelayedCall | None = None

    def admit(self, payloads: Sequence[Payload], size: int | None = None) -> Sequence[Payload]:
        """
        The payloads that may be logged now; the rest are counted.

        @param size: the payloads' total length, when the caller knows it, so
            that a flood costs no per-message work here.
        """
        now = self._clock.seconds()
        if now - self._windowStart >= 1.0:
            self._windowStart = now
            self._admitted = 0
        room = self._perSecond - self._admitted
        if len(payloads) <= room:
            self._admitted += len(payloads)
            return payloads
        if size is None:
            size = sum(map(len, payloads))
        if room <= 0:
            # A flood, after the window's lines: only counting.
            self._hold(len(payloads), size)
            return _NONE
        self._admitted = self._perSecond
        admitted = payloads[:room]
        self._hold(len(payloads) - room, size - sum(map(len, admitted)))
        return admitted

    def admitOne(self) -> bool:
        """
        Whether one more line (about something other than messages) may be
        logged now; if not, it is counted.
        """
        return bool(self.admit(_ONE, 0))

    def _hold(self, messages: int, size: int) -> None:
        self._heldMessages += messages
        self._heldBytes += size
        if self._summary is None:
            delay = max(0.0, self._windowStart + 1.0 - self._clock.seconds())
            self._summary = self._clock.callLater(delay, self._flush)

    def _flush(self) -> None:
        self._summary = None
        messages, size = self._heldMessages, self._heldBytes
        self._heldMessages = self._heldBytes = 0
        self._report(messages, size)

    def stop(self) -> None:
        """
        Report what is held back now and schedule nothing more.
        """
        if self._summary is not None:
            self._summary.cancel()
            self._flush()
