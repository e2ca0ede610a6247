"""
Tests for the C{--cluster*} options of L{streamd.tap}.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from streamd.config import DEFAULT_SUBJECT, ClusterConfig, ConfigError, redacted
from streamd.tap import Options


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class ClusterOptionsTests(SynchronousTestCase):
    """
    C{--cluster} and its companions make a L{ClusterConfig}; mistakes are
    refused at start with a clear message.
    """

    def test_singleNode(self) -> None:
        """
        Without C{--cluster} there is no cluster.
        """
        self.assertIsNone(parse()["config"].cluster)

    def test_servers(self) -> None:
        """
        C{--cluster} is repeatable, one URL per NATS server; the subjects'
        prefix defaults to C{streamd} (stream C{default} on
        C{streamd.default}).
        """
        options = parse("--cluster", "nats://10.0.0.1:4222", "--cluster", "tls://n2:4222")
        self.assertEqual(
            options["config"].cluster,
            ClusterConfig(("nats://10.0.0.1:4222", "tls://n2:4222"), DEFAULT_SUBJECT),
        )

    def test_badURL(self) -> None:
        """
        A URL that is not nats:// or tls:// is refused.
        """
        with self.assertRaises(UsageError) as caught:
            parse("--cluster", "http://x:4222")
        self.assertIn("nats://HOST:PORT", str(caught.exception))

    def test_badSubject(self) -> None:
        """
        A prefix with a wildcard, or an empty token (a leading or trailing
        dot), is refused: the nodes publish on the subjects under it.
        """
        for prefix in ("streamd.>", "streamd.*", "streamd.", ".streamd", "a..b"):
            with self.assertRaises(UsageError) as caught:
                parse("--cluster", "nats://x:4222", "--cluster-subject", prefix)
            self.assertIn("--cluster-subject", str(caught.exception))

    def test_companionsNeedCluster(self) -> None:
        """
        A C{--cluster-*} option without C{--cluster} is a mistake, not
        silently a single node.
        """
        with self.assertRaises(UsageError) as caught:
            parse("--cluster-subject", "prices")
        self.assertEqual(str(caught.exception), "--cluster-subject needs --cluster nats://HOST:PORT")

    def test_secretFiles(self) -> None:
        """
        The password is read from its file when connecting, not given on the
        command line; a file that cannot be read is refused at start.
        """
        path = os.path.join(tempfile.mkdtemp(), "password")
        with open(path, "w") as f:
            f.write("s3cret\n")
        options = parse("--cluster", "nats://x:4222", "--cluster-user", "u", "--cluster-password-file", path)
        self.assertEqual(options["config"].cluster.connectOptions(), {"user": "u", "password": "s3cret"})
        with self.assertRaises(UsageError) as caught:
            parse("--cluster", "nats://x:4222", "--cluster-token-file", path + ".missing")
        self.assertIn("--cluster-token-file", str(caught.exception))

    def test_keyFile(self) -> None:
        """
        C{--cluster-key-file} names the nodes' shared key, read when the link
        starts and never shown; it needs C{--cluster}, and a file that cannot
        be read is refused at start.
        """
        path = os.path.join(tempfile.mkdtemp(), "cluster.key")
        with open(path, "w") as f:
            f.write("k3y\n")
        cluster = parse("--cluster", "nats://x:4222", "--cluster-key-file", path)["config"].cluster
        self.assertEqual(cluster.key(), b"k3y")
        self.assertNotIn("k3y", repr(cluster))
        for argv in (("--cluster-key-file", path), ("--cluster", "nats://x:4222", "--cluster-key-file", path + "-")):
            with self.assertRaises(UsageError) as caught:
                parse(*argv)
            self.assertIn("--cluster-key-file", str(caught.exception))

    def test_caWithoutCertificate(self) -> None:
        """
        A C{--cluster-ca} file with no certificate in it is refused at start.
        """
        path = os.path.join(tempfile.mkdtemp(), "ca.pem")
        with open(path, "w") as f:
            f.write("not a certificate\n")
        with self.assertRaises(UsageError) as caught:
            parse("--cluster", "tls://x:4222", "--cluster-ca", path)
        self.assertIn("--cluster-ca", str(caught.exception))

    def test_needsNatsPy(self) -> None:
        """
        Without nats-py installed, C{--cluster} is refused at start with the
        command that installs it.
        """
        self.patch(importlib.util, "find_spec", lambda name: None)
        with self.assertRaises(UsageError) as caught:
            parse("--cluster", "nats://x:4222")
        self.assertEqual(str(caught.exception), "--cluster needs nats-py: pip install 'streamd[cluster]'")

    def test_userNeedsPassword(self) -> None:
        """
        C{--cluster-user} without its password file is refused.
        """
        with self.assertRaises(UsageError):
            parse("--cluster", "nats://x:4222", "--cluster-user", "u")

    def test_jetstream(self) -> None:
        """
        C{--cluster-history jetstream} with C{--cluster-retention} and
        C{--cluster-replicas}; retention defaults to 64 MiB.
        """
        options = parse(
            "--cluster", "nats://x:4222", "--cluster-history", "jetstream",
            "--cluster-retention", "1GiB,24h", "--cluster-replicas", "3",
        )  # fmt: skip
        config = options["config"].cluster
        self.assertEqual(
            (config.jetstream, config.retentionBytes, config.retentionAge, config.replicas),
            (True, 1 << 30, 86400.0, 3),
        )
        config = parse("--cluster", "nats://x:4222", "--cluster-history", "jetstream")["config"].cluster
        self.assertEqual((config.retentionBytes, config.retentionAge), (64 << 20, None))
        self.assertFalse(parse("--cluster", "nats://x:4222")["config"].cluster.jetstream)

    def test_jetstreamMistakes(self) -> None:
        """
        An unknown history, a malformed retention, and the JetStream
        options without JetStream are refused with one line each.
        """
        for argv, message in (
            (("--cluster-history", "raft"), "--cluster-history must be core or jetstream, not 'raft'"),
            (("--cluster-history", "jetstream", "--cluster-retention", "64MB"), "--cluster-retention '64MB'"),
            (("--cluster-retention", "1h"), "--cluster-retention needs --cluster-history jetstream"),
            (("--cluster-replicas", "3"), "--cluster-replicas needs --cluster-history jetstream"),
        ):
            with self.assertRaises(UsageError) as caught:
                parse("--cluster", "nats://x:4222", *argv)
            self.assertIn(message, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))



class StartOrderTests(SynchronousTestCase):
    """
    Where the cluster link stands among the daemon's services.
    """

    def test_clusterFirst(self) -> None:
        """
        The cluster link starts before the sources and listeners (and stops
        after them), so that in JetStream mode even a source's first message,
        published as it starts, goes to the stream instead of being numbered
        here before the node took the stream's epoch.
        """
        from twisted.internet.task import Clock

        from streamd.config import DaemonConfig
        from streamd.service import StreamdService

        cluster = ClusterConfig(("nats://127.0.0.1:4222",), history="jetstream")
        config = DaemonConfig(listens=(), sources=("clock",), cluster=cluster)
        service = StreamdService(Clock(), config)
        self.assertIs(list(service)[0], service.cluster)


class RedactionTests(SynchronousTestCase):
    """
    A NATS password in a C{--cluster} URL never reaches the log, an error
    message or C{/healthz}.
    """

    def test_redacted(self) -> None:
        """
        The user and password of a URL are replaced; a URL without them is
        shown as it is.
        """
        self.assertEqual(redacted("nats://alice:s3cret@nats.example:4222"), "nats://***@nats.example:4222")
        self.assertEqual(redacted("tls://token@[::1]:4222/x"), "tls://***@[::1]:4222/x")
        self.assertEqual(redacted("nats://nats.example:4222"), "nats://nats.example:4222")

    def test_connectedServer(self) -> None:
        """
        The server a link is on, as the log and C{/healthz} name it, is its
        host and port only.
        """
        from urllib.parse import urlparse

        from streamd.cluster.link import _url

        class Connection:
            connected_url = urlparse("nats://alice:s3cret@nats.example:4222")

        self.assertEqual(_url(Connection()), "nats.example:4222")

    def test_badURLRedacted(self) -> None:
        """
        The error about a malformed C{--cluster} URL does not repeat its
        password.
        """
        error = self.assertRaises(ConfigError, ClusterConfig, servers=("http://alice:s3cret@nats.example:4222",))
        self.assertNotIn("s3cret", str(error))
