"""
Tests that the config objects check themselves when made, whoever makes
them: C{twistd streamd}'s options or a program embedding the daemon.
"""

from __future__ import annotations

import os
from functools import partial

from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy, TokenFile
from streamd.config import ClusterConfig, ConfigError, DaemonConfig, FlowControl, ServerConfig

from .test_auth import tokenFile


class SelfCheckTests(SynchronousTestCase):
    """
    A setting that cannot work raises L{ConfigError}, with one line that
    names the options; the defaults and sensible settings pass.
    """

    def assertRefused(self, make: object, message: str) -> None:
        error = self.assertRaises(ConfigError, make)  # type: ignore[arg-type]
        self.assertEqual(str(error), message)

    def test_defaults(self) -> None:
        """
        The defaults pass, and so do settings at their limits.
        """
        DaemonConfig()
        ServerConfig(maxMessageSize=10, maxPartialBytes=20)
        FlowControl(history=1, maxBehind=5, softBehind=5)

    def test_serverConfig(self) -> None:
        """
        A message size no header can carry, or a partial-frame budget that
        cannot hold two largest messages, is refused.
        """
        self.assertRefused(
            lambda: ServerConfig(maxMessageSize=1 << 32),
            "--max-message-size must be at most 4294967295 (4 GiB - 1)",
        )
        self.assertRefused(
            lambda: ServerConfig(maxMessageSize=10, maxPartialBytes=19),
            "--max-partial-bytes must be at least twice --max-message-size (20),"
            " or a largest message could be cut on its way in",
        )

    def test_flowControl(self) -> None:
        """
        A soft limit over the hard one, or an empty history, is refused.
        """
        self.assertRefused(
            lambda: FlowControl(maxBehind=5, softBehind=6),
            "--soft-pending must not be larger than --max-pending",
        )
        self.assertRefused(lambda: FlowControl(history=0), "--history must be at least 1 byte, not 0")

    def test_clusterURLMistypedKeepsSecrets(self) -> None:
        """
        A --cluster URL that is not one is refused with the credentials it
        carries hidden, whatever the scheme's typo, and the message still
        says what is wrong.
        """
        for url, shown in [
            ("user:SECRETPW@127.0.0.1:4222", "***@127.0.0.1:4222"),
            ("nats:/user:SECRETPW@127.0.0.1:4222", "nats:/***@127.0.0.1:4222"),
            ("nats:user:SECRETPW@127.0.0.1:4222", "***@127.0.0.1:4222"),
            ("nast://SECRETPW@127.0.0.1:4222", "nast://***@127.0.0.1:4222"),
            ("nats:/user:SECRET/PW@host:4222", "nats:/***@host:4222"),
            ("nats://", "nats://"),
        ]:
            with self.subTest(url=url):
                self.assertRefused(
                    partial(ClusterConfig, (url,)),
                    f"--cluster {shown!r} is not a nats://HOST:PORT or tls://HOST:PORT URL",
                )

    def test_daemonConfigInterval(self) -> None:
        """
        A clock faster than a tick a millisecond is refused; one a
        millisecond passes.
        """
        DaemonConfig(interval=0.001)
        self.assertRefused(lambda: DaemonConfig(interval=1e-9), "--interval must be at least 0.001 s, not 1e-09")

    def test_daemonConfigDrain(self) -> None:
        """
        A --drain over an hour, which only SIGKILL would cut short, is
        refused; an hour passes.
        """
        DaemonConfig(drain=3600)
        self.assertRefused(lambda: DaemonConfig(drain=1e308), "--drain must be at most 3600 s (an hour), not 1e+308")

    def test_daemonConfigSources(self) -> None:
        """
        A source that does not parse is refused with the source's own message.
        """
        self.assertRefused(
            lambda: DaemonConfig(sources=("radio",)),
            "unknown source 'radio' (known: clock, exec, file, sh, stdin, or none)",
        )

    def test_accessPolicy(self) -> None:
        """
        A publish token with read-only access is refused: it would let no
        one publish.
        """
        path = tokenFile(b"secret")
        self.addCleanup(os.remove, path)
        self.assertRefused(
            lambda: AccessPolicy(publish=TokenFile(path), readOnly=True),
            "--read-only and --publish-token-file cannot be combined",
        )
