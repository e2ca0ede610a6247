"""
Sources in the whole daemon: the command-line options that reach them.
C{twistd streamd} with live sources is in
L{tests.integration.test_sources_daemon}.
"""

from __future__ import annotations

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from streamd.sources.exec import ExecSource
from streamd.sources.follow import FileSource
from streamd.sources.stdin import StdinSource
from streamd.tap import Options, makeService


class OptionsTests(SynchronousTestCase):
    """
    What C{twistd streamd} options do to the sources.
    """

    def test_restartOptions(self) -> None:
        """
        --restart-delay and --no-restart reach every source; by default a
        command is run again after 1 second.
        """
        options = Options()
        options.parseOptions(["--source", "exec:sleep 1", "--source", "file:/tmp/x.log", "--source", "stdin"])
        service = makeService(options)
        sources = service.sources  # type: ignore[attr-defined]
        self.assertEqual([type(s) for s in sources], [ExecSource, FileSource, StdinSource])
        self.assertEqual([s.spec for s in sources], ["exec:sleep 1", "file:/tmp/x.log", "stdin"])
        self.assertEqual((sources[0].context.restartDelay, sources[0].context.restart), (1.0, True))
        options = Options()
        options.parseOptions(["--source", "sh:vmstat 1", "--restart-delay", "0.5", "--no-restart"])
        context = makeService(options).sources[0].context  # type: ignore[attr-defined]
        self.assertEqual((context.restartDelay, context.restart), (0.5, False))

    def test_badSources(self) -> None:
        """
        A bad source argument is a usage error that says what is wrong.
        """
        for argv, message in [
            (["--source", "exec:"], "bad source 'exec:': give a command"),
            (["--source", "file:"], "bad source 'file:': give a path"),
            (["--source", "stdin:x"], "bad source 'stdin:x': this source takes no argument"),
            (["--restart-delay", "-1"], "--restart-delay must be a time in seconds, at least 0, not '-1'"),
        ]:
            options = Options()
            error = self.assertRaises(usage.UsageError, options.parseOptions, argv)
            self.assertIn(message, str(error))
