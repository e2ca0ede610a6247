"""
The link between this node's streams and NATS (core mode).

Every batch published here by a client or a source goes once to its
stream's subject (C{PREFIX.NAME}, see L{streamd.cluster.routes}); every
batch from one of those subjects is published here once, into the stream
the subject names, with the link as its sender, so it is not sent back out.
The connection asks NATS not to echo this node's own messages back to it
(C{no_echo}), so no node gets its own messages twice.  One connection and
one subscription (C{PREFIX.>}) keep each publisher's order in each stream.

Core NATS delivers at most once: while this node is cut off from NATS, its
clients get only what is published here, and what the other nodes published
meanwhile is lost to them; the link logs that gap, and counts it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from streamd.cluster.guard import Drop, DropCounter, Signer
from streamd.cluster.loop import NatsLoop, loopFor
from streamd.cluster.routes import Routes
from streamd.cluster.wire import NODE, Joiner, Packer, signedBy
from streamd.config import ClusterConfig
from streamd.fanout.cursor import newSerial
from streamd.fanout.history import COUNT, SENDER, Entry
from streamd.fanout.hub import Hub
from streamd.fanout.streams import Streams
from streamd.framing import INT32, FrameTooLong, Payload

PENDING_BYTES = 64 * 1024 * 1024
"""
Bytes of received NATS messages held for the reactor before more are
dropped: this node is then a slow consumer, as nats-py and nats-server would
call it, and reports the gap.
"""


@dataclass
class LinkCounters:
    """
    What went through the link since the daemon started.

    @ivar sent: messages (streamd frames) sent to NATS.
    @ivar received: messages received from the other nodes.
    @ivar dropped: messages published here while NATS was unreachable.
    @ivar gaps: times this node may have missed other nodes' messages (a
        reconnection, or messages nats-py dropped as a slow consumer).
    @ivar slowDropped: NATS messages nats-py dropped as a slow consumer.
    """

    sent: int = 0
    received: int = 0
    dropped: int = 0
    gaps: int = 0
    slowDropped: int = 0


class ClusterLink(Service):
    """
    Joins the streams to the other nodes through NATS while it runs.

    @ivar connected: whether the link is on NATS now (as the reactor last
        heard).
    @ivar server: the C{HOST:PORT} of the NATS server it is on, or was last.
    @ivar failed: whether the link ended on an error (and serves no more).
    @ivar dropped: what came from NATS and was dropped, by reason.
    @ivar signer: the nodes' shared key, if they have one (read at start).
    """

    log = Logger()
    name = "cluster"

    def __init__(
        self,
        streams: Streams,
        reactor: Any,
        config: ClusterConfig,
        maxMessageSize: int,
        pendingBytes: int = PENDING_BYTES,
    ) -> None:
        self.streams = streams
        self.routes = Routes(config.subject, streams)
        self.serial = newSerial()
        self.pendingBytes = pendingBytes
        self.reactor = reactor
        self.config = config
        self.maxMessageSize = maxMessageSize
        self.node = os.urandom(8).hex()
        self.counters = LinkCounters()
        self.connected = False
        self.failed = False
        self.server: str | None = None
        self.dropped = DropCounter(reactor, self.routes.everything)
        self.signer: Signer | None = None
        self.joiner = Joiner(maxMessageSize + INT32.headerSize, reactor, self.dropped)
        self._lock = threading.Lock()
        # Batches for NATS (subject, frames), and what NATS delivered
        # (subject, payload, headers), between the threads.
        self._out: list[tuple[str, bytes]] = []
        self._outFrames = 0
        self._in: list[tuple[str, bytes, dict[str, str] | None]] = []
        self._inBytes = 0
        self._slow = 0
        self._failures = 0
        self._lostAt: float | None = None
        self._loop: NatsLoop | None = None
        self._nc: Any = None
        self._wake: Any = None
        self._main: Any = None

    # The reactor's thread.

    def startService(self) -> None:
        super().startService()
        key = self.config.key()
        self.signer = Signer(key) if key is not None else None
        loop = self._loop = loopFor(self.reactor, f"streamd-cluster-{self.node}")
        loop.start()
        self.routes.attach(self.attachStream)
        self._main = loop.submit(self._run())
        self._main.add_done_callback(self._ended)
        self.log.info(
            "cluster: joining {servers} on subjects {subjects} as node {node} (nats-py {where})",
            servers=self.config.shownServers,
            where=loop.where,
            subjects=self.routes.everything,
            node=self.node,
        )

    def attachStream(self, hub: Hub) -> None:
        """
        Send what is published in the stream of C{hub} to its subject.
        """
        hub.outbound = partial(self.send, self.routes.subject(hub.name), hub)

    def detachStream(self, hub: Hub) -> None:
        """
        Undo L{attachStream}.
        """
        hub.outbound = None

    def _ended(self, future: Any) -> None:
        """
        The link's main coroutine ended (in the loop's thread): cancelled
        at shutdown, or by an error that stops the link.
        """
        if future.cancelled():
            if self.running:
                # Not by stopService, which stops the service first.
                self._inReactor(self._failedForGood, "its task was cancelled")
        elif future.exception() is not None:
            error = future.exception()
            self._inReactor(self._failedForGood, f"{type(error).__name__}: {error}")

    def health(self) -> dict[str, Any]:
        """
        The link's state for C{/healthz}: C{connected}, C{retrying} (NATS
        unreachable, trying again) or C{stopped} (the link ended on an
        error), and what goes with it.
        """
        state = "connected" if self.connected else "stopped" if self.failed else "retrying"
        return {
            "state": state,
            "mode": self.config.history,
            "server": self.server,
            "gaps": self.counters.gaps,
            "dropped": self.counters.dropped,
            "rejected": {reason.label: n for reason, n in self.dropped.counts.items()},
        }

    def _failedForGood(self, error: str) -> None:
        self.failed = True
        self.connected = False
        self.log.critical(
            "cluster: the link to NATS stopped ({error}); this node now serves only its own clients",
            error=error,
        )

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self.routes.detach()
        for hub in self.streams:
            self.detachStream(hub)
        self.joiner.stop()
        self.dropped.stop()
        loop = self._loop
        assert loop is not None
        done: Deferred[None] = Deferred()
        self._main.cancel()
        loop.submit(self._close(lambda: loop.callInReactor(done.callback, None)))
        return done.addCallback(lambda _: loop.stop())

    def published(self, entry: Entry) -> None:
        """
        A batch from NATS is in the log: nobody to tell (L{send} leaves it
        out by its serial).
        """

    def send(self, subject: str, hub: Hub, entry: Entry) -> None:
        """
        The outbound hook of C{hub}, whose subject is C{subject}: queue a
        batch published here for NATS, unless it came from NATS.
        """
        if entry[SENDER] == self.serial:
            return
        if not self.connected:
            self.counters.dropped += entry[COUNT]
            return
        data = hub.history.encoded(entry, INT32)
        with self._lock:
            wake = not self._out
            self._out.append((subject, data))
            self._outFrames += entry[COUNT]
        if wake:
            assert self._loop is not None
            self._loop.callInLoop(self._wakeSender)

    def _publishReceived(self) -> None:
        """
        Publish here what NATS delivered since last time: one batch per
        stream.
        """
        with self._lock:
            batch, self._in = self._in, []
            self._inBytes = 0
        routes = self.routes
        # Per stream: its payloads, their frames, and the node of each NATS
        # message that brought them.
        arrived: dict[str, tuple[list[Payload], list[bytes], list[str]]] = {}
        signer = self.signer
        for subject, data, headers in batch:
            node = (headers or {}).get(NODE, "")
            if signer is not None and not signedBy(signer, subject, data, headers):
                self.dropped(Drop.UNSIGNED, node, subject)
                continue
            frames = self.joiner.feed(subject, data, headers)
            if not frames:
                continue
            decoder = INT32.decoder(self.maxMessageSize)
            got, raw = decoder.feed(frames)
            if decoder.error is not None or len(raw) != len(frames):
                tooLarge = isinstance(decoder.error, FrameTooLong)
                self.dropped(Drop.TOO_LARGE if tooLarge else Drop.NOT_FRAMES, node, subject)
                continue
            name = routes.name(subject)
            run = arrived.get(name)
            if run is None:
                run = arrived[name] = ([], [], [])
            run[0].extend(got)
            run[1].append(frames)
            run[2].append(node)
        for name, (payloads, blocks, nodes) in arrived.items():
            hub = routes.hub(name)
            if hub is None:
                for node in nodes:
                    self.dropped(Drop.NO_STREAM, node, routes.subject(name))
                continue
            self.counters.received += len(payloads)
            hub.publish(payloads, b"".join(blocks), INT32, sender=self)

    def _onServer(self, url: str) -> None:
        """
        On NATS at C{url}, first or again: no failed attempt since.
        """
        self.connected = True
        self.server = url
        self._failures = 0

    def _joined(self, url: str, maxPayload: int) -> None:
        self._onServer(url)
        self.log.info(
            "cluster: on NATS at {url} (max_payload {maxPayload} bytes; larger batches travel in parts)",
            url=url,
            maxPayload=maxPayload,
        )

    def _failed(self, error: str) -> None:
        self._retrying("cluster: cannot reach NATS ({error}); serving local clients and sources,", error)

    def _retrying(self, why: str, error: str) -> None:
        """
        Count a failed attempt, and log it (C{why}, a log format that names
        C{{error}}, then when the link tries again): the first failure, then
        every power of two, so a long outage does not fill the log.
        """
        self._failures += 1
        if self._failures & (self._failures - 1) == 0:
            self.log.warn(
                why + " retrying every {wait:g} s ({n} attempt(s) so far)",
                error=error,
                wait=self.config.reconnectWait,
                n=self._failures,
            )

    def _lost(self) -> None:
        if not self.connected or not self.running:
            return
        self.connected = False
        self._lostAt = self.reactor.seconds()
        self.log.warn("cluster: lost NATS; serving local clients and sources, reconnecting")

    def _back(self, url: str) -> None:
        self._onServer(url)
        self.counters.gaps += 1
        lostAt = self._lostAt
        self.log.warn(
            "cluster: back on NATS at {url} after {seconds:.1f} s: messages the other nodes published"
            " meanwhile did not reach this node's clients (gap {gaps}; core mode is at most once)",
            url=url,
            seconds=self.reactor.seconds() - lostAt if lostAt is not None else 0.0,
            gaps=self.counters.gaps,
        )
        # How many is not known: seq clients get a GAP that covers none of
        # this node's numbers, with the reason, in every stream.
        for hub in self.streams:
            nextSequence = hub.history.nextSequence
            hub.gap(nextSequence, nextSequence - 1)

    def _slowConsumer(self) -> None:
        with self._lock:
            dropped, self._slow = self._slow, 0
        self.counters.slowDropped += dropped
        self.counters.gaps += 1
        self.log.warn(
            "cluster: this node fell behind NATS: {n} NATS message(s) dropped (gap {gaps});"
            " delivery goes on with the next ones",
            n=dropped,
            gaps=self.counters.gaps,
        )

    # The loop's thread.

    async def _run(self) -> None:
        import nats
        from nats.errors import SlowConsumerError

        loop = self._loop
        assert loop is not None

        async def error(e: Exception) -> None:
            if isinstance(e, SlowConsumerError):
                with self._lock:
                    self._slow += 1
                    first = self._slow == 1
                if first:
                    loop.callInReactor(self._slowConsumer)
            elif not nc.is_connected:
                loop.callInReactor(self._failed, str(e) or type(e).__name__)

        async def disconnected() -> None:
            loop.callInReactor(self._lost)

        async def reconnected() -> None:
            loop.callInReactor(self._back, _url(nc))

        nc = nats.NATS()
        self._nc = nc
        await nc.connect(
            servers=list(self.config.servers),
            name=f"streamd {self.node}",
            no_echo=True,
            max_reconnect_attempts=-1,
            # Typed int, but a float works (asyncio.sleep).
            reconnect_time_wait=self.config.reconnectWait,  # type: ignore[arg-type]
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            **self.config.connectOptions(),
        )
        packer = Packer(self.node, nc.max_payload, self.signer)
        await nc.subscribe(self.routes.everything, cb=self._received, pending_bytes_limit=self.pendingBytes)
        await nc.flush()
        import asyncio

        self._wake = asyncio.Event()
        loop.callInReactor(self._joined, _url(nc), nc.max_payload)
        await self._sender(nc, packer)

    async def _sender(self, nc: Any, packer: Packer) -> None:
        """
        Publish what the reactor queued, in order in each stream, until
        cancelled: the batches of one stream that waited together travel
        together, never with another stream's.
        """
        from nats.errors import Error as NatsError

        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            with self._lock:
                queued, self._out = self._out, []
                frames, self._outFrames = self._outFrames, 0
            # The server of a reconnection may allow less.
            packer.limit = nc.max_payload
            try:
                for subject, data, headers in packer.packEach(queued):
                    await nc.publish(subject, data, headers=headers)
            except NatsError as e:
                # Its buffer full while reconnecting, or closing: these are
                # lost to the other nodes, as core NATS would lose them.
                self._inReactor(self._countDropped, frames, str(e) or type(e).__name__)
            else:
                self._inReactor(self._countSent, frames)

    def _inReactor(self, f: Callable[..., object], *args: object) -> None:
        assert self._loop is not None
        self._loop.callInReactor(f, *args)

    def _countSent(self, frames: int) -> None:
        self.counters.sent += frames

    def _countDropped(self, frames: int, error: str) -> None:
        if not self.counters.dropped:
            self.log.warn(
                "cluster: {n} message(s) published here could not be sent to NATS ({error});"
                " counted in the link's dropped messages from now on",
                n=frames,
                error=error,
            )
        self.counters.dropped += frames

    def _wakeSender(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _received(self, msg: Any) -> None:
        with self._lock:
            if self._inBytes + len(msg.data) > self.pendingBytes and self._in:
                self._slow += 1
                report = self._slow == 1
                wake = False
            else:
                report = False
                wake = not self._in
                self._in.append((msg.subject, msg.data, msg.headers))
                self._inBytes += len(msg.data)
        if wake:
            self._inReactor(self._publishReceived)
        if report:
            self._inReactor(self._slowConsumer)

    async def _close(self, then: Callable[[], None]) -> None:
        nc = self._nc
        try:
            if nc is not None and not nc.is_closed:
                await nc.close()
        except Exception as e:
            self._inReactor(self._closeFailed, str(e) or type(e).__name__)
        finally:
            then()

    def _closeFailed(self, error: str) -> None:
        self.log.warn("cluster: closing the NATS connection failed: {error}", error=error)


def _url(nc: Any) -> str:
    """
    The server C{nc} is connected to, as C{HOST:PORT}: never the user and
    password its URL may carry.
    """
    url = nc.connected_url
    if url is None or url.hostname is None:
        return "?"
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return f"{host}:{url.port}" if url.port is not None else host
