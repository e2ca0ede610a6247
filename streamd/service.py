"""
The daemon as one service: hub, sources, listeners, counters, and an orderly
shutdown.
"""

from __future__ import annotations

import gc
import os
import random
import signal
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger

from streamd import _internals
from streamd.config import ConfigError, DaemonConfig, sourceStream
from streamd.fanout.streams import Streams
from streamd.listen import descriptors
from streamd.listen.accept import acceptFirst
from streamd.listen.descriptors import RESERVE
from streamd.listen.listener import ListenerService, ListenFailed
from streamd.seqframing import SEQ
from streamd.seqserver import SeqServerFactory
from streamd.server import StreamServerFactory
from streamd.session import Connections
from streamd.sources import SourceContext, makeSource
from streamd.stats import Stats, StatsLogger

if TYPE_CHECKING:
    from streamd.cluster.link import ClusterLink
    from streamd.durable.datadir import DataDir


def freezeStartup() -> None:
    """
    Leave what starting the daemon built (modules, classes, services) out of
    the cycle collector's full collections from now on: it lasts as long as
    the daemon, and walking it each time would stall the stream for tens of
    milliseconds.  Called once, when twistd's reactor starts.
    """
    gc.collect()
    gc.freeze()


class StartFailed(SystemExit, Exception):
    """
    The daemon cannot start; its str is the one line that says why.

    twistd removes the pidfile and tells a daemonising parent (which then
    exits 1) only about an C{Exception}; being a C{SystemExit} too, with
    code 1, it then ends C{twistd -n} with status 1 and no traceback.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 1


class StreamdService(MultiService):
    """
    The whole daemon.  Stopping it stops listening and the sources, gives
    every client up to C{shutdownTimeout} seconds to take what is queued for
    it, then closes what is left.
    """

    log = Logger()
    _previousHangup: Any = None

    def __init__(self, reactor: Any, config: DaemonConfig) -> None:
        super().__init__()
        self.reactor = reactor
        self.config = config
        _internals.use(config.shortcuts)
        self.stats = Stats()
        self.dataDir = self._openDataDir(reactor, config)
        self.streams = Streams(
            self.stats,
            reactor,
            config.flow,
            config.streams,
            config.declaredStreams,
            self.dataDir,
            config.durable.historyAge,
        )
        self.hub = self.streams.default
        self.connections = Connections(config.server.maxPartialBytes, reactor)
        # When each client is told goodbye in the --drain window.
        self.random = random.Random()
        self.statsLogger = StatsLogger(self.stats, reactor, config.statsInterval)
        context = SourceContext(
            self.hub,
            reactor,
            interval=config.interval,
            maxMessageSize=config.server.maxMessageSize,
            restartDelay=config.restartDelay,
            restart=config.restart,
            dataDir=self.dataDir,
        )
        self.sources = []
        for value in config.sources:
            name, spec = sourceStream(value)
            self.sources.append(makeSource(spec, replace(context, hub=self.streams.open(name))))
        self.listeners = [
            ListenerService(
                listen.endpoint,
                serverFromString(acceptFirst(reactor), listen.description),
                (SeqServerFactory if listen.framing is SEQ else StreamServerFactory)(
                    self.streams.open(listen.stream),
                    reactor,
                    config.server,
                    listen.framing,
                    self.connections,
                    listen.endpoint,
                    self.streams,
                ),
            )
            for listen in config.listens
        ]
        self.listeners += self._httpListeners(reactor, config)
        self.cluster: ClusterLink | None = None
        if config.cluster is not None:
            # Imported only here: a single node needs neither nats-py nor asyncio.
            from streamd.cluster.link import ClusterLink

            if config.cluster.jetstream:
                from streamd.cluster.jetstream import JetStreamLink

                link: type[ClusterLink] = JetStreamLink
            else:
                link = ClusterLink
            self.cluster = link(self.streams, reactor, config.cluster, config.server.maxMessageSize)
        # The cluster link starts first and stops last: in JetStream mode a
        # message published here, even a source's first, goes to the stream.
        first = [] if self.cluster is None else [self.cluster]
        for child in (*first, self.statsLogger, *self.sources, *self.listeners):
            child.setServiceParent(self)

    def _openDataDir(self, reactor: Any, config: DaemonConfig) -> DataDir | None:
        """
        The C{--data-dir}, locked, if there is one; a write past the file
        size limit (C{ulimit -f}) then fails as a full disk does, rather
        than killing the daemon.
        """
        if config.durable.dataDir is None:
            return None
        from streamd.durable.datadir import DataDir

        try:
            dataDir = DataDir(reactor, config.durable.dataDir, config.durable.fsync)
        except ConfigError as e:
            self.log.critical("streamd: {error}", error=str(e))
            raise StartFailed(str(e)) from None
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        return dataDir

    def _httpListeners(self, reactor: Any, config: DaemonConfig) -> list[ListenerService]:
        """
        One listener per C{--http} endpoint, serving L{streamd.web.site}.
        """
        if not config.http:
            return []
        from streamd.web.context import WebContext
        from streamd.web.deflate import Deflater
        from streamd.web.site import makeSite

        deflater = None if config.httpCompress is None else Deflater(config.httpCompress)
        return [
            ListenerService(
                description,
                serverFromString(reactor, config.httpDescription(description)),
                makeSite(
                    WebContext(
                        self.hub,
                        reactor,
                        config.server,
                        self.connections,
                        description,
                        config.httpPublicMetrics,
                        config.httpHeaderTimeout,
                        self.streams,
                        deflater,
                    ),
                    listeners=lambda: self.listeners,
                    sources=self.sources,
                    cluster=lambda: self.cluster.health() if self.cluster is not None else None,
                ),
            )
            for description in config.http
        ]

    def privilegedStartService(self) -> None:
        self.fitDescriptors()
        try:
            super().privilegedStartService()
        except ListenFailed as e:
            # One line in the log (twistd's stdout with -n), no traceback.
            self.log.critical("streamd: {error}", error=str(e))
            raise StartFailed(str(e)) from None

    def fitDescriptors(self) -> None:
        """
        Make room for C{--max-clients} clients among the descriptors the
        daemon may open, or serve as many as there is room for, and say so.
        """
        maxClients = self.config.server.maxClients
        limit, before, after = descriptors.fitClients(maxClients)
        if limit < maxClients:
            self.connections.descriptorLimit = limit
            self.log.warn(
                "the open-file limit is {after} (ulimit -n, or LimitNOFILE in a systemd unit): --max-clients"
                " {maxClients} needs {needed}; serving at most {limit} clients, and refusing the others",
                after=after,
                maxClients=maxClients,
                needed=maxClients + RESERVE,
                limit=limit,
            )
        elif after != before:
            self.log.info(
                "raised the open-file limit from {before} to {after} for --max-clients",
                before=before,
                after=after,
            )

    def startService(self) -> None:
        if self.dataDir is not None:
            self.dataDir.start()
        super().startService()
        # Always: SIGHUP's default action (logrotate, systemctl reload) would
        # end the daemon without its orderly shutdown.
        self._previousHangup = signal.signal(signal.SIGHUP, self._hangup)
        self.checkTokenFilesReadable()

    def checkTokenFilesReadable(self) -> None:
        """
        Warn about each token file (or access file) that the user the
        daemon now runs as (after twistd's C{-u}/C{-g}) cannot read, since
        SIGHUP could not reload it, and about an access file that holds
        tokens as they are and that every user may read.
        """
        effective = os.access in os.supports_effective_ids
        access = self.config.server.access
        for tokenFile in access.tokenFiles:
            if not os.access(tokenFile.path, os.R_OK, effective_ids=effective):
                self.log.warn(
                    "{what} {path} is not readable by uid {uid} gid {gid}, which the daemon runs as: "
                    "SIGHUP cannot reload it (make it readable by that group: chgrp GROUP; chmod 640)",
                    what=tokenFile.what,
                    path=tokenFile.path,
                    uid=os.geteuid(),
                    gid=os.getegid(),
                )
        accessFile = access.accessFile
        if accessFile is not None and accessFile.exposed():
            self.log.warn(
                "access file {path} holds tokens and every user may read it: chmod 640, "
                "or write each token as sha256:HEX (see docs/security.rst)",
                path=accessFile.path,
            )

    def _hangup(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.reloadTokens)

    def reloadTokens(self) -> None:
        """
        Re-read the token files and the access file (what SIGHUP does).  A
        file that cannot be read, or says something wrong, leaves its old
        tokens and rules in force, and is named in one line.
        """
        access = self.config.server.access
        if not access.expectsToken:
            self.log.info("SIGHUP: no token files to reload")
            return
        reloaded, failures = access.reload()
        for failure in failures:
            self.log.error(
                "reload failed, keeping the file's old tokens and rules: {error}", error=str(failure)
            )
        if reloaded:
            self.log.info("reloaded token file(s): {files}", files=", ".join(reloaded))
            self.connections.reauthorize()

    @inlineCallbacks
    def stopService(self) -> Any:
        self.running = 0
        if self._previousHangup is not None:
            signal.signal(signal.SIGHUP, self._previousHangup)
            self._previousHangup = None
        previous = {
            number: signal.signal(number, self._stopAgain)
            for number in STOP_SIGNALS
            if signal.getsignal(number) is not signal.SIG_IGN
        }
        try:
            yield self._stopAll()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _stopAgain(self, signum: int, frame: object) -> None:
        self.reactor.callFromThread(self.closeNow, signal.Signals(signum).name)

    def closeNow(self, signalName: str) -> None:
        """
        What a second SIGINT or SIGTERM does while the daemon stops: close
        every connection still open at once, without waiting out the
        C{--drain} window or their output.
        """
        if self.connections:
            self._abortAll(f"{signalName} during shutdown: closing {{n}} connection(s) now")

    @inlineCallbacks
    def _stopAll(self) -> Any:
        for listener in self.listeners:
            yield listener.stopService()
        yield gatherResults([maybeDeferred(source.stopService) for source in self.sources])
        yield self.closeConnections(self.config.shutdownTimeout)
        if self.cluster is not None:
            yield self.cluster.stopService()
        if self.dataDir is not None:
            yield self.dataDir.stop()
        self.streams.stop()
        if self.dataDir is not None:
            self.dataDir.unlock()
        self.connections.stopLogging()
        self.statsLogger.stopService()

    def closeConnections(self, timeout: float) -> Deferred[None]:
        """
        Tell every client goodbye, each at a random moment of the C{--drain}
        window (all at once without one), after what is queued for it, as
        NATS's lame-duck mode does: the clients of a restarted daemon then
        come back spread over that window, not in the same second.  After
        the window and C{timeout} seconds more, close whatever is still
        open.  HTTP connections that are not a session are closed at once.
        """
        connections = self.connections
        for channel in connections.channels:
            channel.loseConnection()
        drain = self.config.drain
        if len(connections):
            self.log.info(
                "closing {n} connection(s) over {drain:g} s, waiting up to {timeout:g} s more for their output",
                n=len(connections),
                drain=drain,
                timeout=timeout,
            )
        calls = []
        for session in connections:
            if drain:
                calls.append(self.reactor.callLater(self.random.uniform(0, drain), session.close))
            else:
                session.close()
        done = connections.whenEmpty()
        if not done.called:
            calls.append(
                self.reactor.callLater(
                    drain + timeout, self._abortAll, "{n} connection(s) did not take their output in time; closing them"
                )
            )
            done.addBoth(_cancelling(*calls))
        return done

    def _abortAll(self, why: str) -> None:
        """
        Close every connection now, after one warning: C{why}, a log
        format in which C{n} is their number.
        """
        self.log.warn(why, n=len(self.connections))
        for session in self.connections:
            session.abort()


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
"""
The signals that stop the daemon; one more while it stops closes what is
left at once (unless the daemon was started with it ignored).
"""


def _cancelling(*delayedCalls: Any) -> Any:
    def cancel(result: object) -> object:
        for delayedCall in delayedCalls:
            if delayedCall.active():
                delayedCall.cancel()
        return result

    return cancel
