"""
Integration tests of delivery through the shared history, against real
C{twistd streamd} processes, with real clients: C{python -m streamd.client}
and a stdlib reader that parses frames, each in its own process.

Each runs C{python -m bench.delivery} as a user would, smaller
than its defaults, with a history made small to match, so that the same
limits are reached in seconds, and reads the line it prints.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from tests.support import ENV, printed

MiB = 2**20
RUN_SECONDS = 120


def delivery(*argv: str) -> str:
    """
    What C{python -m bench.delivery} with C{argv} printed; it must
    exit 0, which it does only if the daemon logged no error.
    """
    done = subprocess.run(
        [sys.executable, "-m", "bench.delivery", *argv],
        capture_output=True,
        timeout=RUN_SECONDS,
        env=ENV,
    )
    if done.returncode:
        raise AssertionError(f"exit status {done.returncode}: {done.stdout!r} {done.stderr[-2000:]!r}")
    return done.stdout.decode()


class BulkStdinTests(SynchronousTestCase):
    """
    C{some-program | twistd -n streamd --source stdin} with a fast program.
    """

    def test_everyLineToEveryReader(self) -> None:
        """
        300,000 lines fed flat out through a pipe, about twice the history:
        the client and the stdlib reader each receive every line in order,
        a client that never reads is cut with a log line, and the daemon
        grows by at most the history and 16 MiB.

        The history is larger than loopback's socket buffers (up to about
        10 MB): a reader counts as keeping up once it has drained while
        behind, and with a smaller history the printing client could be
        pushed out of it before its first drain, while its buffers filled.

        The daemon waits up to 30 s (not 1) for a reader that fell behind:
        on a loaded machine the printing client can stall for seconds, and
        the never-reader is cut however long the wait, since it never drains.
        """
        out = delivery(
            "bulk", "--lines", "300000", "--non-reader", "--history", str(16 * MiB), "--stall-timeout", "30"
        )
        self.assertEqual(printed(r"streamd\.client got ([\d,]+) \(in order\)", out), 300_000, out)
        self.assertEqual(printed(r"reader\(s\) got ([\d,]+) each at least \(in order\)", out), 300_000, out)
        self.assertIn("its position left the --history", out.split("non-reader: ", 1)[1])
        self.assertLess(printed(r"growth ([\d.]+) MiB", out), 16 + 16, out)


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
        out = delivery("block", "--seconds", "4")
        published = printed(r"published ([\d,]+) in", out)
        self.assertEqual(printed(r"healthy subscriber got ([\d,]+) \(in order\)", out), published, out)
        self.assertGreater(printed(r"block, (\d+) never-reading reconnects", out), 50, out)
        self.assertGreaterEqual(printed(r"(\d+)% of the publisher's rate", out), 90, out)
