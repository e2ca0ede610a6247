"""
Integration tests of delivery through the shared history, against real
C{twistd streamd} processes, with real clients: C{python -m streamd.client}
and a stdlib reader that parses frames, each in its own process.

Smaller than the scenarios C{python -m streamd.bench.delivery} runs, with a
history made small to match, so that the same limits are reached in
seconds.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from streamd.bench import delivery

MiB = 2**20


class BulkStdinTests(SynchronousTestCase):
    """
    C{some-program | twistd -n streamd --source stdin} with a fast program.
    """

    def test_everyLineToEveryReader(self) -> None:
        """
        300,000 lines fed flat out through a pipe, five times the history:
        the client and the stdlib reader each receive every line in order,
        a client that never reads is cut with a log line, and the daemon
        grows by at most the history and 16 MiB.
        """
        result = delivery.bulk(300_000, nonReader=True, options=("--history", str(6 * MiB)))
        self.assertEqual(result.clientLines, 300_000, result.summary())
        self.assertTrue(result.clientInOrder, result.summary())
        self.assertEqual(result.readerLines, 300_000, result.summary())
        self.assertTrue(result.readerInOrder, result.summary())
        self.assertIn("its position left the --history", result.nonReaderCut, result.summary())
        self.assertLess(result.growth, 6 * MiB + 16 * MiB, result.summary())
        self.assertFalse([entry for entry in result.log if "Traceback" in entry or "Unhandled" in entry])


class BlockModeTests(SynchronousTestCase):
    """
    C{--slow-consumer block} against clients that never read.
    """

    def test_reconnectingNonReadersCannotStopTheStream(self) -> None:
        """
        With never-reading clients reconnecting all the time, a healthy
        subscriber of a 1 MB/s block-mode stream receives every message, in
        order, at 90% of the publisher's rate or better.
        """
        result = delivery.block(seconds=4.0)
        self.assertEqual(result.received, result.published, result.summary())
        self.assertTrue(result.inOrder, result.summary())
        self.assertGreater(result.reconnects, 50, result.summary())
        self.assertGreaterEqual(result.rateRatio, 0.9, result.summary())
