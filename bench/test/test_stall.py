"""
The stalled-client scenario, C{python -m bench.stall}, as its users run it.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from streamd.config import FlowControl
from tests.support import ENV, printed


class StalledClientTests(SynchronousTestCase):
    """
    In the style of NATS' slow-consumer tests.
    """

    def test_stalledClientCutHealthyClientWhole(self) -> None:
        """
        With default limits, a client with a tiny receive buffer that never
        reads is cut, with a log line naming the rule, once its position has
        left the history, while a publisher pushes 100 MB and other
        connections send garbage; a healthy client receives every message in
        order, and the daemon's memory grows by at most the history and
        16 MiB.
        """
        done = subprocess.run(
            [sys.executable, "-m", "bench.stall", "100"], capture_output=True, timeout=120, env=ENV
        )
        out = done.stdout.decode()
        self.assertEqual(done.returncode, 0, out + done.stderr.decode()[-2000:])
        published = printed(r"published (\d+) messages", out)
        self.assertEqual(printed(r"healthy client received (\d+), in order", out), published, out)
        self.assertRegex(out, r"stalled client cut: [\d.]+ s after publishing began: .*is too slow")
        growth = printed(r"growth ([\d.]+) MiB", out)
        self.assertLess(growth * 2**20, FlowControl.history + 16 * 2**20, out)
        self.assertGreater(printed(r"garbage connections during the run: (\d+)", out), 0, out)
