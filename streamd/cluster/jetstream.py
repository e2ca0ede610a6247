"""
The link between this node's hub and a JetStream stream (C{--cluster-history
jetstream}).

Every message published here (by a client or a source) goes into the stream
as one JetStream message, published with an acknowledgement, and is not
delivered here yet.  Every node reads the stream in order from the sequence
number after the last one it holds, and publishes what it reads into its hub
with the stream's sequence number: so every node holds the same messages, in
the same order, under the same numbers, and local clients get a message
published here once it is in the stream, like everyone else.  The epoch is
the stream's (its name and creation time), the same on every node; a stream
made anew has a new one.

A node cut off from NATS keeps what is published here (up to
L{PENDING_BYTES}) and sends it when it is back; it then reads the stream
from where it stopped, so its clients miss nothing the stream still holds.
What the stream no longer holds reaches C{seq} clients as a GAP.

Each message carries a C{Nats-Msg-Id} (this node and a count), which lets
the stream drop a copy sent again after a lost acknowledgement (within its
duplicate window) and tells this node which messages it published, so the
client that published one does not get it back, as on a single node.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from twisted.logger import Logger

from streamd import _internals
from streamd.cluster.link import PENDING_BYTES, ClusterLink, _url
from streamd.config import ClusterConfig
from streamd.fanout.hub import Hub, Sender
from streamd.framing import Payload

MSG_ID = "Nats-Msg-Id"
WINDOW = 256
"""
JetStream messages published before their acknowledgements are awaited.
"""
API_TIMEOUT = 2.0
"""
Seconds to wait for an answer of the JetStream API (stream and consumer
set-up), tried again after a timeout: a NATS cluster electing its leader
answers nothing meanwhile.
"""
WATCH_SECONDS = 2.0
"""
Seconds between two looks at the stream's last sequence number: when the
stream holds messages this node expects and none came since the last look,
the consumer is stuck (say, made on a server whose copy of the stream was
not current yet), and the node reads the stream again.
"""
ACK_TIMEOUT = 5.0
"""
Seconds to wait for an acknowledgement before publishing again (from the
first message not acknowledged, in order).
"""


def epochOf(name: str, created: str) -> bytes:
    """
    The cluster's epoch: 8 bytes that every node computes alike from the
    stream's name and creation time, and that change when it is made anew.
    """
    return hashlib.sha256(f"{name}\0{created}".encode()).digest()[:8]


class StreamRecreated(Exception):
    """
    The stream this node read from was replaced by a new one (another epoch).
    """


class JetStreamLink(ClusterLink):
    """
    Joins the hub to a JetStream stream while it runs.

    @ivar expected: the stream sequence number of the next message to read
        (the loop's thread keeps it).
    """

    log = Logger()

    def __init__(
        self,
        hub: Hub,
        reactor: Any,
        config: ClusterConfig,
        maxMessageSize: int,
        pendingBytes: int = PENDING_BYTES,
    ) -> None:
        super().__init__(hub, reactor, config, maxMessageSize, pendingBytes)
        self._outBytes = 0
        self._count = 0
        # Who published each message of ours not yet back from the stream.
        self._senders: dict[int, Sender] = {}
        self.expected = 1
        self.epoch: bytes | None = None
        self._sub: Any = None
        self._js: Any = None
        self._connectedEvent: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # Called with the cluster's epoch when this node takes it.

    # The reactor's thread.

    def startService(self) -> None:
        super().startService()
        self.hub.outbound = None
        self.hub.upstream = self.forward

    def stopService(self) -> Any:
        self.hub.upstream = None
        return super().stopService()

    def forward(self, payloads: Sequence[Payload], sender: Sender | None) -> None:
        """
        The hub's upstream hook: queue messages published here for the
        stream, in order.
        """
        size = sum(map(len, payloads))
        with self._lock:
            if self._outBytes + size > self.pendingBytes and self._out:
                full = True
            else:
                full = False
                wake = not self._out
                for payload in payloads:
                    self._count += 1
                    if sender is not None:
                        self._senders[self._count] = sender
                    self._out.append((self._count, bytes(payload)))  # type: ignore[arg-type]
                self._outBytes += size
        if full:
            self._countDropped(len(payloads), f"more than {self.pendingBytes} bytes wait for the stream")
            return
        if wake and self._loop is not None:
            self._loop.callInLoop(self._wakeSender)

    def _publishReceived(self) -> None:
        """
        Publish here, numbered as in the stream, what it delivered since
        last time: one batch per run of messages from one sender.
        """
        with self._lock:
            batch, self._in = self._in, []
            self._inBytes = 0
        hub = self.hub
        run: list[bytes] = []
        first = 0
        runSender: Sender = self
        for seq, data, mine in batch:  # type: ignore[misc]
            sender = (self._senders.pop(mine, None) if mine else None) or self
            if run and (sender is not runSender or seq != first + len(run)):
                hub.publish(run, sender=runSender, first=first)
                run = []
            if not run:
                first, runSender = seq, sender
            run.append(data)
        if run:
            hub.publish(run, sender=runSender, first=first)
        self.counters.received += len(batch)

    def _adopt(self, epoch: bytes, url: str, maxPayload: int) -> None:
        """
        Joined the stream, whose epoch is C{epoch}.
        """
        history = self.hub.history
        if history.epoch != epoch:
            history.adoptEpoch(epoch)
        self._onServer(url)
        self.log.info(
            "cluster: on NATS at {url}, JetStream stream {stream} (epoch {epoch}):"
            " reading it from message {seq} on",
            url=url,
            stream=self.config.streamName,
            epoch=epoch.hex(),
            seq=history.nextSequence,
        )
        if self.maxMessageSize > maxPayload:
            self.log.warn(
                "cluster: --max-message-size {size} is over the NATS server's max_payload ({maxPayload}):"
                " larger messages cannot enter the JetStream stream and are dropped",
                size=self.maxMessageSize,
                maxPayload=maxPayload,
            )

    def _back(self, url: str) -> None:
        self._onServer(url)
        self.log.info(
            "cluster: back on NATS at {url}: reading the stream from message {seq} on",
            url=url,
            seq=self.hub.history.nextSequence,
        )

    def _failedForGood(self, error: str) -> None:
        # Messages published here would wait for the stream forever: number
        # and deliver them here again, as a single node does.
        self.hub.upstream = None
        super()._failedForGood(error)

    def health(self) -> dict[str, Any]:
        health = super().health()
        health["stream"] = self.config.streamName
        health["next"] = self.hub.history.nextSequence
        return health

    def _noJetStream(self, error: str) -> None:
        self._retrying(
            "cluster: JetStream does not serve the stream yet ({error}; is it enabled, nats-server -js,"
            " and has a NATS cluster its leader?);",
            error,
        )

    def _publishedBadly(self, error: str) -> None:
        self.log.warn("cluster: publishing into the JetStream stream failed ({error}); retrying", error=error)

    # The loop's thread.

    async def _run(self) -> None:
        import nats
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout
        from nats.js.errors import APIError

        loop = self._loop
        assert loop is not None
        self._task = asyncio.current_task()
        connected = self._connectedEvent = asyncio.Event()
        self._wake = asyncio.Event()

        async def error(e: Exception) -> None:
            if not nc.is_connected:
                loop.callInReactor(self._failed, str(e) or type(e).__name__)

        async def disconnected() -> None:
            connected.clear()
            loop.callInReactor(self._lost)

        async def readAgain() -> None:
            # The consumer may be gone with the server that held it: read
            # again from the next message expected, once JetStream answers.
            while nc.is_connected:
                try:
                    await self._consume()
                except StreamRecreated as e:
                    loop.callInReactor(self._failedForGood, str(e))
                    await nc.close()
                    return
                except Exception as e:
                    loop.callInReactor(self._noJetStream, str(e) or type(e).__name__)
                    await asyncio.sleep(self.config.reconnectWait)
                else:
                    connected.set()
                    loop.callInReactor(self._back, _url(nc))
                    return

        async def reconnected() -> None:
            tasks.add(asyncio.ensure_future(readAgain()))
            for task in [t for t in tasks if t.done()]:
                tasks.discard(task)

        tasks: set[asyncio.Future[None]] = set()

        nc = nats.NATS()
        self._nc = nc
        await nc.connect(
            servers=list(self.config.servers),
            name=f"streamd {self.node}",
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.config.reconnectWait,  # type: ignore[arg-type]
            # Nothing is buffered while reconnecting: what a connection
            # stored is then a prefix of what was sent on it, so publishing
            # again from the first unacknowledged message keeps the order.
            pending_size=0,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            **self.config.connectOptions(),
        )
        js = self._js = nc.jetstream(timeout=API_TIMEOUT)
        while True:
            # JetStream may not answer yet (a NATS cluster electing its
            # leader, a stream being placed): try again, as for a server.
            try:
                info = await self._ensureStream(js)
                self.epoch = epochOf(info.config.name, _created(info))
                await self._consume()
            except (NatsTimeout, NoRespondersError, APIError) as e:
                # Also what a NATS cluster answers while it places a new
                # stream (in use, yet not found), or a lasting refusal
                # (more replicas than servers), which the log then shows.
                loop.callInReactor(self._noJetStream, str(e) or type(e).__name__)
                await asyncio.sleep(self.config.reconnectWait)
            else:
                break
        connected.set()
        loop.callInReactor(self._adopt, self.epoch, _url(nc), nc.max_payload)
        tasks.add(asyncio.ensure_future(self._watch(connected)))
        try:
            await self._sender(nc, js)
        finally:
            for task in tasks:
                task.cancel()

    async def _watch(self, connected: asyncio.Event) -> None:
        """
        Read the stream again when messages it holds do not arrive.
        """
        seen = self.expected
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            if not connected.is_set():
                continue
            expected = self.expected
            try:
                info = await self._js.stream_info(self.config.streamName)
                if info.state.last_seq >= expected == seen:
                    self._inReactor(self._stuck, expected, info.state.last_seq)
                    await self._consume()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self._inReactor(self._noJetStream, str(e) or type(e).__name__)
            seen = self.expected

    def _stuck(self, expected: int, last: int) -> None:
        self.log.warn(
            "cluster: the stream holds messages {expected} to {last} but none arrived for {seconds:g} s;"
            " reading it again",
            expected=expected,
            last=last,
            seconds=WATCH_SECONDS,
        )

    async def _ensureStream(self, js: Any) -> Any:
        """
        Create the stream, or bring an existing one's limits to this node's
        options; both are idempotent, so every node does it.
        """
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError

        config = self.config
        wanted = StreamConfig(
            name=config.streamName,
            subjects=[config.subject],
            storage=StorageType.FILE,
            max_bytes=config.retentionBytes or -1,
            max_age=config.retentionAge or 0,
            num_replicas=config.replicas,
        )
        try:
            info = await js.stream_info(config.streamName)
        except NotFoundError:
            try:
                return await js.add_stream(wanted)
            except BadRequestError:
                # Another node made it meanwhile (or an earlier try of ours
                # whose answer was lost), perhaps not quite alike.
                info = await js.stream_info(config.streamName)
        current = info.config
        if current.subjects != [config.subject]:
            raise ValueError(
                f"JetStream stream {config.streamName} holds subjects {current.subjects}, not {config.subject}"
            )
        if (current.max_bytes, current.max_age or 0, current.num_replicas) != (
            wanted.max_bytes,
            wanted.max_age,
            wanted.num_replicas,
        ):
            current.max_bytes = wanted.max_bytes
            current.max_age = wanted.max_age
            current.num_replicas = wanted.num_replicas
            return await js.update_stream(current)
        return info

    async def _consume(self) -> None:
        """
        Read the stream in order from L{expected} on, with an ordered
        consumer (which also starts again by itself when it misses
        messages or heartbeats).
        """
        from nats.js.api import ConsumerConfig, DeliverPolicy

        js = self._js
        info = await self._ensureStream(js)
        epoch = epochOf(info.config.name, _created(info))
        if self.epoch is not None and epoch != self.epoch:
            raise StreamRecreated(
                f"the JetStream stream {info.config.name} was made anew (another epoch):"
                " restart this node to serve it"
            )
        # The new consumer first: if it cannot be made, the old one (which
        # nats-py may have started again by itself) goes on.
        sub = await js.subscribe(
            self.config.subject,
            stream=info.config.name,
            cb=self._received,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            config=ConsumerConfig(opt_start_seq=self.expected),
            pending_bytes_limit=self.pendingBytes,
        )
        await self._unsubscribe()
        self._sub = sub

    async def _unsubscribe(self) -> None:
        """
        Leave the consumer read so far, and stop its heartbeat and flow
        control tasks even if the connection can no longer say so.
        """
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await sub.unsubscribe()
        except Exception:
            _internals.stopConsumerTasks(sub)

    async def _close(self, then: Callable[[], None]) -> None:
        # Let the cancelled main task unwind before the loop stops.
        if self._task is not None:
            await asyncio.wait([self._task], timeout=1)
        await self._unsubscribe()
        await super()._close(then)

    async def _received(self, msg: Any) -> None:
        seq = msg.metadata.sequence.stream
        if seq < self.expected:
            return
        self.expected = seq + 1
        mine = 0
        headers = msg.headers
        if headers:
            node, _, count = headers.get(MSG_ID, "").rpartition("-")
            if node == self.node and count.isdigit():
                mine = int(count)
        with self._lock:
            wake = not self._in
            self._in.append((seq, msg.data, mine))  # type: ignore[arg-type]
            self._inBytes += len(msg.data)
        if wake:
            self._inReactor(self._publishReceived)

    async def _sender(self, nc: Any, js: Any) -> None:
        """
        Publish what the reactor queued into the stream, in order, each
        message acknowledged before it leaves the queue; until cancelled.
        """
        from nats.errors import Error as NatsError
        from nats.js.errors import Error as JetStreamError

        subject = self.config.subject
        wake = self._wake
        connected = self._connectedEvent
        assert wake is not None and connected is not None
        unacked: deque[tuple[int, bytes]] = deque()
        while True:
            if not unacked:
                await wake.wait()
            wake.clear()
            with self._lock:
                unacked.extend(self._out)  # type: ignore[arg-type]
                self._out = []
                self._outBytes = 0
            await connected.wait()
            window = [unacked[i] for i in range(min(WINDOW, len(unacked)))]
            futures: list[Any] = []
            try:
                for count, payload in window:
                    if len(payload) > nc.max_payload:
                        futures.append(None)
                        continue
                    futures.append(
                        await js.publish_async(
                            subject, payload, headers={MSG_ID: f"{self.node}-{count}"}
                        )
                    )
                for (count, payload), future in zip(window, futures, strict=True):
                    if future is None:
                        self._inReactor(self._tooLarge, count, len(payload), nc.max_payload)
                    else:
                        await asyncio.wait_for(future, ACK_TIMEOUT)
                    unacked.popleft()
                self._inReactor(self._countSent, len(window))
            except (NatsError, JetStreamError, asyncio.TimeoutError) as e:
                for future in futures:
                    if future is None:
                        continue
                    if not future.done():
                        future.cancel()
                    elif not future.cancelled():
                        # Retrieved, so that asyncio does not report it.
                        future.exception()
                self._inReactor(self._publishedBadly, str(e) or type(e).__name__)
                await asyncio.sleep(self.config.reconnectWait)

    def _tooLarge(self, count: int, size: int, maxPayload: int) -> None:
        self._senders.pop(count, None)
        self._countDropped(1, f"a {size}-byte message is over the NATS server's max_payload ({maxPayload})")


def _created(info: Any) -> str:
    created = info.created
    return created.isoformat() if created is not None else ""
