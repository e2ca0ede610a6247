"""
A short real run of the benchmark: a streamd server, a publisher and a
subscriber, as processes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

SMOKE_SECONDS = 30


class SmokeTests(SynchronousTestCase):
    """
    A short real run: a streamd server, a publisher and a subscriber.
    """

    def test_quickBurst(self) -> None:
        """
        A quick K=1 burst run prints a table with figures and writes them as
        JSON.
        """
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            argv = [
                "--quick",
                "--scenario",
                "burst",
                "--k",
                "1",
                "--size",
                "64",
                "--duration",
                "0.3",
                "--warmup",
                "0.1",
            ]
            done = subprocess.run(
                [sys.executable, "-m", "streamd.bench", *argv, "--json", str(out)],
                capture_output=True,
                timeout=SMOKE_SECONDS,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            self.assertEqual(done.returncode, 0, done.stderr)
            self.assertIn(b"K=1", done.stdout)
            (result,) = json.loads(out.read_text())["results"]
        self.assertEqual(
            (result["scenario"], result["cell"], result["errors"]), ("burst", {"k": 1, "size": 64}, [])
        )
        self.assertGreater(result["median"]["deliveries_per_s"], 0)
