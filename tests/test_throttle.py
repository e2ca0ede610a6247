"""
Tests for L{streamd.throttle}: at most so many log lines a second, and an
exact count of what was held back.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from streamd.throttle import LogThrottle


class LogThrottleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.reports: list[tuple[int, int]] = []
        self.throttle = LogThrottle(self.clock, lambda messages, size: self.reports.append((messages, size)), 3)

    def test_heldAcrossReadsIsSummedOnce(self) -> None:
        """
        Once a window's lines are used, later batches in the same second are
        only counted, with or without their size given; one report at the end
        of the window sums everything held back.
        """
        self.assertEqual(self.throttle.admit([b"a", b"bb"]), [b"a", b"bb"])
        self.assertEqual(list(self.throttle.admit([b"ccc", b"dddd"], 7)), [b"ccc"])
        self.assertEqual(list(self.throttle.admit([b"eeeee"])), [])
        self.assertEqual(list(self.throttle.admit([b"ff", b"g"], 3)), [])
        self.assertEqual(self.reports, [])
        self.clock.advance(1.0)
        self.assertEqual(self.reports, [(4, 4 + 5 + 3)])
        self.assertEqual(self.throttle.admit([b"h"]), [b"h"])

    def test_stopReportsWhatIsHeld(self) -> None:
        """
        L{LogThrottle.stop} reports at once what is held and leaves no timer.
        """
        self.throttle.admit([b"x"] * 5)
        self.throttle.stop()
        self.assertEqual(self.reports, [(2, 2)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
