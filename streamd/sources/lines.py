"""
Line-oriented sources: a byte stream cut into lines, one message per line.

A line ends at C{\\n}; the C{\\n} and a C{\\r} just before it are removed, so
CRLF output gives the same messages as LF output.  An empty line is an empty
message.

A line longer than the maximum message size is skipped, with a log line, and
never split: every message is a whole line, so a consumer that parses lines
(JSON, CSV, C{key=value}) never sees a fragment.  While a line is being
skipped its bytes are counted, not kept, so memory stays bounded by the
maximum message size whatever arrives, including binary output that has no
newline at all.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from streamd.linesplit import LineSplitter
from streamd.sources.base import Source, SourceContext
from streamd.throttle import LogThrottle


class LineSource(Source):
    """
    A source that publishes each line of some input as one message, and logs
    (rate-limited) the lines it skips for being too long.
    """

    log = Logger()

    def __init__(self, context: SourceContext, argument: Any = None) -> None:
        super().__init__(context, argument)
        self._skipNotes = LogThrottle(context.reactor, self._reportSkipNotes)

    def lineSplitter(self, stream: str = "output") -> LineSplitter:
        """
        A splitter for one input of this source (C{stream} names it in the
        log), limited to the maximum message size.
        """

        def onSkip(length: int, finished: bool) -> None:
            self._lineSkipped(stream, length, finished)

        return LineSplitter(self.context.maxMessageSize, onSkip)

    def publishLines(self, lines: list[bytes]) -> None:
        """
        Publish C{lines}, if any, as one batch.
        """
        if lines:
            self.publishMany(lines)

    def _lineSkipped(self, stream: str, length: int, finished: bool) -> None:
        if not self._skipNotes.admit([b""]):
            return
        if finished:
            self.log.warn(
                "{source}: skipped a {length}-byte line of its {stream}, over the {limit}-byte --max-message-size",
                source=self.spec,
                length=length,
                stream=stream,
                limit=self.context.maxMessageSize,
            )
        else:
            self.log.warn(
                "{source}: a line of its {stream} is over the {limit}-byte --max-message-size; skipping it up to the next newline",
                source=self.spec,
                stream=stream,
                limit=self.context.maxMessageSize,
            )

    def _reportSkipNotes(self, messages: int, size: int) -> None:
        self.log.warn(
            "{source}: {n} more notes about skipped long lines not logged one by one",
            source=self.spec,
            n=messages,
        )

    def stopService(self) -> Any:
        self._skipNotes.stop()
        return super().stopService()
