"""
Named streams under a real C{twistd -n streamd}: a source feeding one
stream, an C{int32} listener bound to it, a C{seq} listener whose clients
subscribe to names and patterns, and the command-line client publishing to
a stream by name.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from ..support import spawnPython, spawnTwistd, waitFor
from .test_client_process import Spawned

PRICES = "prices=sh:i=0; while true; do i=$((i+1)); echo p$i; sleep 0.05; done"


class StreamsProcessTests(TestCase):
    """
    One daemon, two streams, the clients users run.
    """

    timeout = 60

    @inlineCallbacks
    def daemon(self, *argv: str) -> Any:
        """
        A daemon whose source feeds C{prices}, with an C{int32} listener
        bound to C{prices} and a C{seq} one; fires with it and the two
        ports once both listen.
        """
        process = spawnTwistd(
            self,
            "--source",
            PRICES,
            "--listen",
            "tcp:0:interface=127.0.0.1:stream=prices",
            "--listen",
            "tcp:0:interface=127.0.0.1:framing=seq",
            *argv,
        )
        yield process.logged(b"(seq framing)")
        prices = re.search(rb"listening on 127\.0\.0\.1:(\d+) \(stream prices\)", process.output)
        seq = re.search(rb"listening on 127\.0\.0\.1:(\d+) \(seq framing\)", process.output)
        assert prices is not None and seq is not None
        return process, int(prices.group(1)), int(seq.group(1))

    def client(self, port: int, *argv: str) -> Spawned:
        return spawnPython(self, ("-m", "streamd.client", "--port", str(port), *argv), Spawned())

    @inlineCallbacks
    def test_boundListener(self) -> Any:
        """
        A plain C{int32} client of a listener bound to C{prices} reads the
        source's stream; what it sends goes to C{prices}, not C{default}.
        """
        _, prices, seq = yield self.daemon()
        reader = self.client(prices, "--count", "3")
        status = yield reader.ended
        lines = reader.out.decode().splitlines()
        self.assertEqual((status.exitCode, reader.err), (0, b""))
        self.assertEqual(len(lines), 3)
        self.assertTrue(all(re.fullmatch(r"p\d+", line) for line in lines), lines)
        watcher = self.client(
            seq, "--framing", "seq", "--stream", "prices", "--stream", "default", "--count", "200"
        )
        yield waitFor(lambda: b"prices " in watcher.out)
        sender = self.client(prices, "--send", "from-int32", "--count", "0")
        yield sender.ended
        yield waitFor(lambda: b"prices from-int32\n" in watcher.out)
        self.assertNotIn(b"default ", watcher.out)

    @inlineCallbacks
    def test_namesAndPatterns(self) -> Any:
        """
        A C{seq} client subscribed to a name and a pattern prints each
        message with its stream (and number, with C{--show-seq}), the
        streams the pattern matches made later included; a client
        publishing by name reaches it.
        """
        _, _, seq = yield self.daemon()
        reader = self.client(seq, "--framing", "seq", "--stream", "prices", "--stream", "logs.*", "--show-seq")
        yield waitFor(lambda: reader.out.count(b"\n") >= 2)
        # "other" first: had it been sent, it would be there before the last.
        for name, text in (("other", "not for it"), ("logs.web", "GET /"), ("logs.db", "slow query")):
            sender = self.client(seq, "--framing", "seq", "--stream", name, "--send", text, "--count", "0")
            status = yield sender.ended
            self.assertEqual((status.exitCode, sender.err), (0, b""))
        yield waitFor(lambda: b"logs.db 1 slow query\n" in reader.out, 30)
        lines = reader.out.decode().split("\n")[:-1]
        self.assertIn("logs.web 1 GET /", lines)
        self.assertFalse([line for line in lines if line.startswith("other")])
        numbers = [int(line.split()[1]) for line in lines if line.startswith("prices ")]
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))))

    @inlineCallbacks
    def test_stdinToStream(self) -> Any:
        """
        C{--stdin} with one C{--stream} publishes each line to that stream,
        and exits 0 once the daemon has taken them all.
        """
        _, _, seq = yield self.daemon()
        # --last: it gets them, whether it subscribes before or after they come.
        reader = self.client(seq, "--framing", "seq", "--stream", "chat", "--last", "10", "--count", "3")
        sender = self.client(seq, "--framing", "seq", "--stream", "chat", "--stdin", "--count", "0")
        sender.transport.write(b"one\ntwo\nthree\n")
        sender.transport.closeStdin()
        status = yield sender.ended
        self.assertEqual((status.exitCode, sender.err), (0, b""))
        status = yield reader.ended
        self.assertEqual((status.exitCode, reader.out), (0, b"chat one\nchat two\nchat three\n"))

    @inlineCallbacks
    def test_refusedStream(self) -> Any:
        """
        With C{--streams declared}, a stream nobody declared is refused in
        one line, and the client goes on with the others.
        """
        _, _, seq = yield self.daemon("--streams", "declared")
        reader = self.client(
            seq, "--framing", "seq", "--stream", "nosuch", "--stream", "prices", "--count", "2"
        )
        status = yield reader.ended
        self.assertEqual(status.exitCode, 0)
        self.assertEqual(
            reader.err.decode(),
            "streamd.client: refused nosuch: no stream 'nosuch': only the declared streams exist"
            " (--streams declared)\n",
        )
        self.assertEqual(len(reader.out.decode().splitlines()), 2)
