"""
The daemon as one service: hub, sources, listeners, counters, and an orderly
shutdown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from streamd.framing import INT32, Framing
from streamd.hub import Hub
from streamd.listener import ListenerService, ListenFailed
from streamd.server import Connections, ServerConfig, StreamServerFactory
from streamd.sources import SourceContext, makeSource
from streamd.stats import Stats, StatsLogger


@dataclass(frozen=True)
class Listen:
    """
    One endpoint to listen on, and the framing its clients speak.
    """

    endpoint: str
    framing: Framing = INT32


@dataclass(frozen=True)
class DaemonConfig:
    """
    Everything the daemon is started with.
    """

    listens: tuple[Listen, ...] = (Listen("tcp:7000:interface=127.0.0.1"),)
    sources: tuple[str, ...] = ("clock",)
    interval: float = 1.0
    server: ServerConfig = field(default_factory=ServerConfig)
    blockPublishers: bool = False
    shutdownTimeout: float = 5.0
    statsInterval: float = 60.0


class StreamdService(MultiService):
    """
    The whole daemon.  Stopping it stops listening and the sources, gives
    every client up to C{shutdownTimeout} seconds to take what is queued for
    it, then closes what is left.
    """

    log = Logger()

    def __init__(self, reactor: Any, config: DaemonConfig) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        self.stats = Stats()
        self.hub = Hub(self.stats, blockPublishers=config.blockPublishers)
        self.connections = Connections()
        self.statsLogger = StatsLogger(self.stats, reactor, config.statsInterval)
        context = SourceContext(self.hub, reactor, config.interval, config.server.maxMessageSize)
        self.sources = [makeSource(spec, context) for spec in config.sources]
        self.listeners = [
            ListenerService(
                listen.endpoint,
                serverFromString(reactor, listen.endpoint),
                StreamServerFactory(self.hub, reactor, config.server, listen.framing, self.connections),
            )
            for listen in config.listens
        ]
        for child in (self.statsLogger, *self.sources, *self.listeners):
            child.setServiceParent(self)

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except ListenFailed as e:
            # One line in the log (twistd's stdout with -n), no traceback.
            self.log.critical("streamd: {error}", error=str(e))
            raise SystemExit(1) from None

    @inlineCallbacks
    def stopService(self) -> Any:
        self.running = 0
        for listener in self.listeners:
            yield listener.stopService()
        for source in self.sources:
            yield source.stopService()
        yield self.closeConnections(self.config.shutdownTimeout)
        self.statsLogger.stopService()

    def closeConnections(self, timeout: float) -> Deferred[None]:
        """
        Let every client take what is queued for it, then close; after
        C{timeout} seconds, close whatever is still open.
        """
        if len(self.connections):
            self.log.info(
                "closing {n} connection(s), waiting up to {timeout:g} s for their output",
                n=len(self.connections),
                timeout=timeout,
            )
        for protocol in self.connections:
            protocol.close()
        done = self.connections.whenEmpty()
        if not done.called:
            deadline = self.reactor.callLater(timeout, self._abortAll)
            done.addBoth(_cancelling(deadline))
        return done

    def _abortAll(self) -> None:
        self.log.warn(
            "{n} connection(s) did not take their output in time; closing them",
            n=len(self.connections),
        )
        for protocol in self.connections:
            protocol.abort()


def _cancelling(delayedCall: Any) -> Any:
    def cancel(result: object) -> object:
        if delayedCall.active():
            delayedCall.cancel()
        return result

    return cancel
