"""
The benchmark as its users run it, C{python -m bench ...} in a subprocess
with tiny settings, its output parsed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

SMOKE_SECONDS = 60
TINY = ["--quick", "--k", "1", "--size", "64", "--duration", "0.3", "--warmup", "0.1"]


def _run(*argv: str, timeout: float = SMOKE_SECONDS) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _bench(case: SynchronousTestCase, *argv: str, timeout: float = SMOKE_SECONDS) -> tuple[bytes, Any]:
    """
    Run C{python -m bench} with C{argv}, expect success, and return
    what it printed and the JSON it wrote.
    """
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        done = _run("-m", "bench", *argv, "--json", str(out), timeout=timeout)
        case.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout, json.loads(out.read_text())


class SmokeTests(SynchronousTestCase):
    """
    Short real runs: a streamd server, a publisher and subscribers.
    """

    def test_quickBurst(self) -> None:
        """
        A quick K=1 burst run prints a table with figures and writes them as
        JSON.
        """
        stdout, document = _bench(self, *TINY, "--scenario", "burst")
        self.assertIn(b"K=1", stdout)
        (result,) = document["results"]
        self.assertEqual(
            (result["scenario"], result["cell"], result["errors"]), ("burst", {"k": 1, "size": 64}, [])
        )
        self.assertGreater(result["median"]["deliveries_per_s"], 0)

    def test_protocols(self) -> None:
        """
        With --protocols seq,ws,ws-deflate,sse, burst and paced run with
        subscribers of each protocol beside int32's, each delivering, and
        the tables show each one's ratio to int32; JSON payloads reach
        ws-deflate's subscribers in fewer bytes than ws's.
        """
        argv = [*TINY, "-s", "burst,paced", "--rate", "1000", "--protocols", "seq,ws,ws-deflate,sse"]
        argv += ["--size", "1KiB", "--payload", "json"]
        stdout, document = _bench(self, *argv, timeout=4 * SMOKE_SECONDS)
        found = {(r["scenario"], r["server"]): r for r in document["results"]}
        servers = ("streamd", "streamd seq", "streamd ws", "streamd ws-deflate", "streamd sse")
        self.assertEqual(sorted(found), sorted((s, n) for s in ("burst", "paced") for n in servers))
        for result in found.values():
            self.assertEqual(result["errors"], [])
            self.assertGreater(result["median"]["deliveries_per_s"], 0)
        for name in ("seq/int32", "ws/int32", "ws-deflate/int32", "sse/int32"):
            self.assertEqual(stdout.count(name.encode()), 2)
        wire = {server: found[("burst", server)]["median"]["wire_bytes_per_delivery"] for server in servers}
        self.assertLess(wire["streamd ws-deflate"], wire["streamd ws"] / 2)

    def test_countedSse(self) -> None:
        """
        With --protocols sse-c, burst runs with SSE subscribers counted by
        the C reader, which deliver, and paced leaves them out: they time
        nothing.
        """
        argv = [*TINY, "-s", "burst,paced", "--rate", "1000", "--protocols", "sse-c"]
        stdout, document = _bench(self, *argv, timeout=2 * SMOKE_SECONDS)
        found = {(r["scenario"], r["server"]): r for r in document["results"]}
        self.assertEqual(
            sorted(found), [("burst", "streamd"), ("burst", "streamd sse-c"), ("paced", "streamd")]
        )
        for result in found.values():
            self.assertEqual(result["errors"], [])
            self.assertGreater(result["median"]["deliveries_per_s"], 0)
        self.assertEqual(stdout.count(b"sse-c/int32"), 1)

    def test_tls(self) -> None:
        """
        With --protocols tls,wss, burst and paced run with subscribers over
        TLS, int32's and WebSocket's, each delivering, and the tables divide
        wss's figures by int32 over TLS's as well as by int32's.
        """
        argv = [*TINY, "-s", "burst,paced", "--rate", "1000", "--protocols", "tls,wss"]
        stdout, document = _bench(self, *argv, timeout=2 * SMOKE_SECONDS)
        found = {(r["scenario"], r["server"]): r for r in document["results"]}
        servers = ("streamd", "streamd tls", "streamd wss")
        self.assertEqual(sorted(found), sorted((s, n) for s in ("burst", "paced") for n in servers))
        for result in found.values():
            self.assertEqual(result["errors"], [])
            self.assertGreater(result["median"]["deliveries_per_s"], 0)
        labels = [line.split()[0] for line in stdout.decode().splitlines() if line.strip()]
        for name in ("tls/int32", "wss/int32", "wss/tls"):
            self.assertEqual(labels.count(name), 2)

    def test_resumeAndScrape(self) -> None:
        """
        The resume scenario times reconnects of a seq subscriber; the scrape
        scenario times /metrics with no client and with a storm of idle ones.
        """
        argv = ["--quick", "-s", "resume,scrape", "--reconnects", "5", "--idle-clients", "50"]
        stdout, document = _bench(self, *argv)
        found = {r["scenario"]: r for r in document["results"]}
        self.assertEqual((found["resume"]["server"], found["scrape"]["server"]), ("streamd seq", "streamd"))
        self.assertEqual([r["errors"] for r in found.values()], [[], []])
        resume = found["resume"]["median"]
        self.assertGreater(resume["resume_p50_ms"], 0)
        self.assertGreaterEqual(resume["resume_p99_ms"], resume["resume_p50_ms"])
        self.assertGreater(found["scrape"]["median"]["scrape_ms"], 0)
        self.assertIn(b"0 conn ms", stdout)

    def test_quickAgainstNats(self) -> None:
        """
        A quick burst and a 50-client storm against streamd and a real
        nats-server (in the test extras: this fails, never skips, when it is
        missing) both deliver, and the table has a ratio row.
        """
        argv = [*TINY, "-s", "burst,idle", "--idle-clients", "50", "--compare", "nats"]
        stdout, document = _bench(self, *argv, timeout=2 * SMOKE_SECONDS)
        self.assertIn(b"ratio", stdout)
        self.assertTrue(document["nats"])
        found = {(r["scenario"], r["server"]): r for r in document["results"]}
        self.assertEqual(
            sorted(found), sorted((s, n) for s in ("burst", "idle") for n in ("streamd", "nats"))
        )
        for result in found.values():
            self.assertEqual(result["errors"], [])
        self.assertGreater(found["burst", "nats"]["median"]["deliveries_per_s"], 0)
        self.assertGreater(found["idle", "nats"]["median"]["accepts_per_s"], 0)


class CommandLineTests(SynchronousTestCase):
    """
    Mistakes on the command line.
    """

    def test_badOptions(self) -> None:
        """
        A bad value is reported in one line naming the option, without a
        traceback, with exit status 2.
        """
        for argv, named in (
            (["--runs", "none"], "--runs"),
            (["--protocols", "mqtt"], "--protocols"),
            (["--reconnects", "0"], "--reconnects"),
            (["--size", "2"], "too small"),
        ):
            done = _run("-m", "bench", *argv)
            lines = done.stderr.decode().splitlines()
            self.assertEqual((done.returncode, len(lines)), (2, 1), done.stderr)
            self.assertIn(named, lines[0])
            self.assertNotIn("Traceback", lines[0])
