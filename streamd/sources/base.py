"""
What every source has: a hub to publish into, and a way to be paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from streamd.fanout.hub import Hub
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE

if TYPE_CHECKING:
    from streamd.durable.datadir import DataDir


@dataclass(frozen=True)
class SourceContext:
    """
    What a source is built with: the hub, the reactor and the daemon's
    settings that sources share.

    @ivar restartDelay: seconds before a command that exited is run again.
    @ivar restart: whether to run it again at all.
    @ivar killGrace: seconds a command gets to exit after SIGTERM before it
        gets SIGKILL.
    @ivar dataDir: the C{--data-dir}, where a source keeps its place, if
        there is one.
    """

    hub: Hub
    reactor: Any
    interval: float = 1.0
    maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE
    restartDelay: float = 1.0
    restart: bool = True
    killGrace: float = 5.0
    dataDir: DataDir | None = None


@implementer(IPushProducer)
class Source(Service):
    """
    A service that publishes messages into the hub while it runs.

    The hub pauses it while the history is full of messages that a client
    that keeps up has not been sent yet; a source that cannot stop
    producing ignores that, the default.

    @ivar spec: the C{--source} value it was made from, to name it in the log.
    """

    def __init__(self, context: SourceContext, argument: Any = None) -> None:
        self.context = context
        self.argument = argument
        self.spec = type(self).__name__

    @classmethod
    def parseArgument(cls, argument: str) -> Any:
        """
        Check and convert what follows C{NAME:} in C{--source NAME:ARGUMENT}.

        @raise ValueError: with a message for the command line.
        """
        if argument:
            raise ValueError("this source takes no argument")
        return None

    def publish(self, payload: bytes) -> None:
        """
        Send one message to every client.
        """
        self.publishMany([payload])

    def publishMany(self, payloads: list[bytes]) -> None:
        """
        Send several messages to every client, framed once per framing.
        """
        self.context.hub.publish(payloads)

    def startService(self) -> None:
        super().startService()
        self.context.hub.addPublisher(self, waits=True)

    def stopService(self) -> Any:
        self.context.hub.removePublisher(self)
        return super().stopService()

    def pauseProducing(self) -> None:
        """
        Stop publishing until L{resumeProducing}.
        """

    def resumeProducing(self) -> None:
        """
        Publish again.
        """

    def stopProducing(self) -> None:
        """
        Part of C{IPushProducer}; sources stop with the service instead.
        """
