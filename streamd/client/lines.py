"""
C{python -m streamd.client --stdin}: each line of standard input sent as
one message.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from streamd.linesplit import LineSplitter

PROGRAM = "streamd.client"


class LineSender(Protocol):
    """
    Sends each line of standard input as one message, reading no faster than
    the connection takes them.
    """

    def __init__(self, client: Any, whenDone: Deferred[None], maxLength: int) -> None:
        self.client = client
        self.whenDone = whenDone
        self.splitter = LineSplitter(maxLength, self._skipped)

    def connectionMade(self) -> None:
        # Standard input pauses while the connection's buffer is full.
        self.client.transport.registerProducer(self.transport, True)

    def dataReceived(self, data: bytes) -> None:
        for line in self.splitter.feed(data):
            self.client.sendString(line)

    def _skipped(self, length: int, finished: bool) -> None:
        if finished:
            sys.stderr.write(f"{PROGRAM}: skipped a {length}-byte line, over --max-message-size\n")

    def connectionLost(self, reason: Failure | None = None) -> None:
        for line in self.splitter.finish():
            self.client.sendString(line)
        self.client.transport.unregisterProducer()
        self.whenDone.callback(None)
