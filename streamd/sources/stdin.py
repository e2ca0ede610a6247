"""
The C{stdin} source: the daemon's standard input, one message per line, for
C{some-program | twistd -n streamd --source stdin}.

Only with C{twistd -n}: a daemonized twistd reads its standard input from
C{/dev/null}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import fdesc
from twisted.internet.process import ProcessReader
from twisted.logger import Logger
from twisted.python.failure import Failure

from streamd.sources.lines import LineSource


class StdinSource(LineSource):
    """
    Publishes each line read from file descriptor L{fileno}.  At end of
    input it publishes an unfinished last line, logs the end and goes on
    serving clients and the other sources.
    """

    log = Logger()
    fileno = 0
    _reader: ProcessReader | None = None

    def startService(self) -> None:
        super().startService()
        self._lines = self.lineSplitter("standard input")
        try:
            self._reader = ProcessReader(self.context.reactor, self, "stdin", self.fileno)
        except OSError as e:
            self.log.error(
                "{source}: cannot read standard input: {error}", source=self.spec, error=e.strerror
            )
            return
        self.log.info("{source}: reading standard input", source=self.spec)

    def childDataReceived(self, name: str, data: bytes) -> None:
        """
        Bytes read (the reader's callback).
        """
        self.publishLines(self._lines.feed(data))

    def childConnectionLost(self, name: str, reason: Failure) -> None:
        """
        End of input, or an error reading it (the reader's callback).
        """
        self._reader = None
        _setBlocking(self.fileno)
        self.publishLines(self._lines.finish())
        self.log.info(
            "{source}: standard input ended ({reason}); still serving",
            source=self.spec,
            reason=reason.getErrorMessage(),
        )

    def pauseProducing(self) -> None:
        if self._reader is not None:
            self._reader.stopReading()

    def resumeProducing(self) -> None:
        if self._reader is not None:
            self._reader.startReading()

    def stopService(self) -> Any:
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.stopReading()
            _setBlocking(self.fileno)
        return super().stopService()


def _setBlocking(fileno: int) -> None:
    # The descriptor stays open (its number must not be reused by a socket),
    # but blocking again, as whoever shares it (a terminal's shell) expects.
    try:
        fdesc.setBlocking(fileno)
    except OSError:
        pass
