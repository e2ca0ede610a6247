"""
The link between this node's streams and a JetStream stream
(C{--cluster-history jetstream}).

One JetStream stream holds every streamd stream of the cluster: its
subjects are C{PREFIX.>}, and a streamd stream's batches are on its subject,
C{PREFIX.NAME} (see L{streamd.cluster.routes}).  Every message published
here (by a client or a source) goes into it, and is not delivered here yet.
Every node reads it in order and publishes what it reads into the streamd
stream its subject names, under the numbers it carries, so every node holds
the same messages of each stream, in the same order, under the same
numbers, and local clients get a message published here once it is in the
JetStream stream, like everyone else.  Each stream's epoch is made from the
JetStream stream's (its name and creation time) and the stream's name
(L{streamEpoch}): the same on every node, another for each stream, and a
new one when the JetStream stream is made anew.

The mapping: a JetStream message is a batch of whole int32 frames of one
stream (as in core mode), with headers

  - C{Nats-Msg-Id}: the node's identity, C{-}, and a random token drawn for
    each attempt (so no other node's id can collide with it, and a NATS user
    cannot take one in advance);
  - C{Streamd-First}: the number of its first message in its stream; the
    others follow, one each;
  - C{Streamd-Count}: how many messages it holds;
  - C{Streamd-Signature}, with C{--cluster-key-file}, over the payload, the
    headers C{Nats-Msg-Id} and C{Streamd-First}, and the subject.

A node numbers its batches after the last message it has read: the first
with C{Nats-Expected-Last-Sequence} (the JetStream stream takes it only
right after that message), each of the next with
C{Nats-Expected-Last-Msg-Id} (only right after the one before), L{WINDOW}
of them in flight, acknowledgements matched as they come.  This one chain
orders the batches of every stream, so a node knows, batch after batch,
the next number of each stream in it.  When another node got in first, the
JetStream stream refuses the batch and those behind it; the node then reads
the stream through its last message, and publishes again, numbered anew,
what did not come back.  A batch is done when it comes back from the
stream, not when acknowledged, so a lost acknowledgement, a reconnection or
a refusal neither loses nor doubles it, and each publisher's order in each
stream is kept.

Every node keeps, per stream, the next number it expects, and takes a batch
whose first number is that, or later (what the JetStream stream no longer
holds reaches C{seq} clients as a GAP), and drops it otherwise; so every
node that reads the stream numbers every stream alike.  A node cut off from
NATS keeps what is published here (up to L{PENDING_BYTES}) and sends it
when it is back, then reads the JetStream stream from where it stopped.

A stream's batches may all leave the JetStream stream (its retention) while
the stream goes on: a quiet stream beside busy ones.  So that a node that
did not read them (one started since) numbers that stream's next batch as
the others expect, the JetStream stream republishes the headers of every
batch into a second one, its I{numbers} stream (L{NUMBERS}), which keeps
the last of each stream for good; a node looks there before it publishes
to a stream it has read nothing of.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections import deque
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from twisted.logger import Logger

from streamd import _internals
from streamd.cluster.guard import NODE_ID, Drop
from streamd.cluster.link import PENDING_BYTES, ClusterLink, _url
from streamd.cluster.wire import HEADER_ROOM, SIGNATURE, frameSpans
from streamd.config import ClusterConfig
from streamd.fanout.hub import Hub, Sender
from streamd.fanout.streams import Streams
from streamd.framing import INT32, Payload
from streamd.names import BadName, checkName

MSG_ID = "Nats-Msg-Id"
FIRST = "Streamd-First"
COUNT = "Streamd-Count"
NUMBERS = "-numbers"
"""
What names the numbers stream, after the JetStream stream's name, and its
subjects' prefix, after C{--cluster-subject}: C{streamd-streamd-numbers},
of subjects C{streamd-numbers.>}.
"""
NO_MESSAGE = 10037
"""
The JetStream error of a subject of which a stream holds no message.
"""
LOOKUPS = 64
"""
Streams whose numbers a node looks up at once, at most.
"""
EXPECTED_LAST_SEQUENCE = "Nats-Expected-Last-Sequence"
EXPECTED_LAST_ID = "Nats-Expected-Last-Msg-Id"
WINDOW = 16
"""
Batches in flight to the stream, not yet acknowledged.
"""
FULL = 64 * 1024
"""
Bytes of a batch that goes without waiting: a smaller one waits until no
other is in flight, gathering what is published meanwhile, so that a
stream of small writes costs one JetStream message per round trip, not one
per write.
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
Seconds to wait for an acknowledgement before reading the stream through
and publishing again what did not come back.
"""
_DIGITS = re.compile(r"[0-9]{1,18}\Z")
_CONFLICTS = (b"10071", b"10070")
"""
The JetStream errors (wrong last sequence, wrong last message id) of a
batch that another node's got ahead of: routine, not logged.
"""


def epochOf(name: str, created: str) -> bytes:
    """
    The cluster's epoch: 8 bytes that every node computes alike from the
    JetStream stream's name and creation time, and that change when it is
    made anew.
    """
    return hashlib.sha256(f"{name}\0{created}".encode()).digest()[:8]


def streamEpoch(epoch: bytes, name: str) -> bytes:
    """
    The epoch of stream C{name} in the cluster of epoch C{epoch}: the same on
    every node, and another for each stream, so a position in one stream is
    never taken for one in another.
    """
    return hashlib.sha256(epoch + name.encode()).digest()[:8]


class StreamRecreated(Exception):
    """
    The stream this node read from was replaced by a new one (another epoch).
    """


class WrongSubjects(Exception):
    """
    The JetStream stream of this node's name holds other subjects than the
    ones it needs: another cluster's, or one made by hand.
    """


_Runs = list[tuple[int, "Sender | None"]]
"""
Who published each run of a batch's messages here: how many, and who.
"""


class _Batch:
    """
    Messages published here in one stream, on their way through the
    JetStream stream: their stream, their frames, who published each run of
    them, and the ids of the attempts to publish them.
    """

    __slots__ = ("stream", "data", "count", "runs", "attempts")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.data = b""
        self.count = 0
        self.runs: _Runs = []
        self.attempts: list[str] = []

    def add(self, block: bytes, count: int, sender: Sender | None) -> None:
        self.data += block
        self.count += count
        if self.runs and self.runs[-1][1] is sender:
            self.runs[-1] = (self.runs[-1][0] + count, sender)
        else:
            self.runs.append((count, sender))


class JetStreamLink(ClusterLink):
    """
    Joins the streams to a JetStream stream while it runs.

    @ivar expected: the JetStream stream's sequence number of the next
        message to read (the loop's thread keeps it, and the rest of the
        numbering).
    @ivar numbers: the number the next message read should have, per stream
        (1 for a stream not in it).
    @ivar adopted: the JetStream stream's epoch, once the reactor knows it.
    """

    log = Logger()

    def __init__(
        self,
        streams: Streams,
        reactor: Any,
        config: ClusterConfig,
        maxMessageSize: int,
        pendingBytes: int = PENDING_BYTES,
    ) -> None:
        super().__init__(streams, reactor, config, maxMessageSize, pendingBytes)
        # Published here, not taken into batches yet (the reactor's thread
        # adds, the loop's takes): (stream, frames, count, publisher); and
        # the bytes not back from the JetStream stream.
        self._queued: list[tuple[str, bytes, int, Sender | None]] = []
        self._outBytes = 0
        # Read from the stream, for the reactor: (stream, number, payloads,
        # frames, who published each run of them if this node did, node).
        self._read: list[tuple[str, int, list[Payload], bytes, _Runs | None, str]] = []
        self.expected = 1
        self.numbers: dict[str, int] = {}
        self.epoch: bytes | None = None
        self.adopted: bytes | None = None
        self._sub: Any = None
        self._js: Any = None
        self._connectedEvent: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        # The loop's thread: the next number of each stream this node
        # publishes to and has read nothing of, as the numbers stream says;
        # batches not back from the stream, in order (the first _sent of
        # them sent); the batch of each stream that takes more messages; the
        # batch of each attempt; the attempts in flight; the chain's last
        # attempt, and each stream's next number after it.
        self._looked: dict[str, int] = {}
        self._pending: deque[_Batch] = deque()
        self._open: dict[str, _Batch] = {}
        self._attempts: dict[str, _Batch] = {}
        self._inflight: set[str] = set()
        self._sent = 0
        self._tail: str | None = None
        self._next: dict[str, int] = {}
        self._broken = False
        self._ackBy = 0.0
        self._progress: asyncio.Event | None = None

    # The reactor's thread.

    def attachStream(self, hub: Hub) -> None:
        """
        Hand what is published in the stream of C{hub} to the JetStream
        stream, and give it its epoch once the cluster's is known.
        """
        hub.upstream = partial(self.forward, hub.name)
        if self.adopted is not None:
            self._adoptEpoch(hub)
        else:
            hub.history.awaitingEpoch = True

    def detachStream(self, hub: Hub) -> None:
        hub.upstream = None
        hub.history.awaitingEpoch = False

    def _adoptEpoch(self, hub: Hub) -> None:
        assert self.adopted is not None
        history = hub.history
        epoch = streamEpoch(self.adopted, hub.name)
        if history.epoch != epoch:
            history.adoptEpoch(epoch)
        history.awaitingEpoch = False

    def forward(self, stream: str, payloads: Sequence[Payload], sender: Sender | None) -> None:
        """
        The upstream hook of stream C{stream}: queue messages published
        here for the JetStream stream, in order.
        """
        block = INT32.encodeMany(payloads)
        with self._lock:
            full = self._outBytes + len(block) > self.pendingBytes and self._outBytes > 0
            if not full:
                wake = not self._queued
                self._queued.append((stream, block, len(payloads), sender))
                self._outBytes += len(block)
        if full:
            self._countDropped(len(payloads), f"more than {self.pendingBytes} bytes wait for the stream")
            return
        if wake and self._loop is not None:
            self._loop.callInLoop(self._wakeSender)

    def _publishReceived(self) -> None:
        """
        Publish here, numbered as in the JetStream stream, what it delivered
        since last time, each batch into its stream: one publish per run of
        messages from one sender.
        """
        with self._lock:
            batch, self._read = self._read, []
        routes = self.routes
        received = 0
        for name, first, payloads, data, runs, node in batch:
            hub = routes.hub(name)
            if hub is None:
                self.dropped(Drop.NO_STREAM, node, routes.subject(name))
                continue
            received += len(payloads)
            if runs is None:
                hub.publish(payloads, data, INT32, sender=self, first=first)
                continue
            done = offset = 0
            for count, sender in runs:
                run = payloads[done : done + count]
                size = sum(map(len, run)) + INT32.headerSize * count
                hub.publish(run, data[offset : offset + size], INT32, sender=sender or self, first=first + done)
                done += count
                offset += size
        self.counters.received += received

    def _adopt(self, epoch: bytes, url: str, maxPayload: int) -> None:
        """
        Joined the JetStream stream, whose epoch is C{epoch}: every stream
        takes its own epoch of it.
        """
        self.adopted = epoch
        for hub in self.streams:
            self._adoptEpoch(hub)
        self._onServer(url)
        self.log.info(
            "cluster: on NATS at {url}, JetStream stream {stream} of subjects {subjects} (epoch {epoch}):"
            " reading it from message {seq} on",
            url=url,
            stream=self.config.streamName,
            subjects=self.routes.everything,
            epoch=epoch.hex(),
            seq=self.expected,
        )
        if self.maxMessageSize > maxPayload - HEADER_ROOM:
            self.log.warn(
                "cluster: --max-message-size {size} is over what fits in a message of the NATS server"
                " ({room} bytes of its max_payload {maxPayload}): larger messages cannot enter the"
                " JetStream stream and are dropped",
                size=self.maxMessageSize,
                room=maxPayload - HEADER_ROOM,
                maxPayload=maxPayload,
            )

    def _back(self, url: str) -> None:
        self._onServer(url)
        self.log.info(
            "cluster: back on NATS at {url}: reading the stream from message {seq} on",
            url=url,
            seq=self.expected,
        )

    def _failedForGood(self, error: str) -> None:
        # Messages published here would wait for the stream forever: number
        # and deliver them here again, as a single node does.
        self.routes.detach()
        for hub in self.streams:
            self.detachStream(hub)
        super()._failedForGood(error)

    def health(self) -> dict[str, Any]:
        health = super().health()
        health["stream"] = self.config.streamName
        health["read"] = self.expected - 1
        return health

    def _noJetStream(self, error: str) -> None:
        self._retrying(
            "cluster: JetStream does not serve the stream yet ({error}; is it enabled, nats-server -js,"
            " and has a NATS cluster its leader?);",
            error,
        )

    def _publishedBadly(self, error: str) -> None:
        self.log.warn(
            "cluster: publishing into the JetStream stream failed ({error}); reading it through and"
            " publishing again what did not arrive",
            error=error,
        )

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
        self._progress = asyncio.Event()

        async def error(e: Exception) -> None:
            if not nc.is_connected:
                loop.callInReactor(self._failed, str(e) or type(e).__name__)

        async def disconnected() -> None:
            connected.clear()
            self._breakChain()
            loop.callInReactor(self._lost)

        async def readAgain() -> None:
            # The consumer may be gone with the server that held it: read
            # again from the next message expected, once JetStream answers.
            while nc.is_connected:
                try:
                    await self._consume()
                except (StreamRecreated, WrongSubjects) as e:
                    loop.callInReactor(self._failedForGood, str(e))
                    await nc.close()
                    return
                except Exception as e:
                    loop.callInReactor(self._noJetStream, str(e) or type(e).__name__)
                    await asyncio.sleep(self.config.reconnectWait)
                else:
                    connected.set()
                    self._wakeSender()
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
            # Nothing is buffered while reconnecting: a batch either reached
            # the server on the connection it was sent on, or not at all.
            pending_size=0,
            error_cb=error,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            **self.config.connectOptions(),
        )
        js = self._js = nc.jetstream(timeout=API_TIMEOUT)
        inbox = nc.new_inbox()
        await nc.subscribe(f"{inbox}.*", cb=self._acked)
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
            await self._publisher(nc, inbox)
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
        Create the JetStream stream and its numbers stream, or bring
        existing ones to this node's options; both are idempotent, so every
        node does it.

        @return: the JetStream stream's info.
        """
        from nats.js.api import RePublish, StorageType, StreamConfig

        config = self.config
        numbers = f"{config.subject}{NUMBERS}.>"
        await self._ensure(
            js,
            StreamConfig(
                name=config.streamName + NUMBERS,
                subjects=[numbers],
                storage=StorageType.FILE,
                max_msgs_per_subject=1,
                num_replicas=config.replicas,
            ),
            ("max_msgs_per_subject", "num_replicas"),
        )
        everything = self.routes.everything
        return await self._ensure(
            js,
            StreamConfig(
                name=config.streamName,
                subjects=[everything],
                storage=StorageType.FILE,
                max_bytes=config.retentionBytes or -1,
                max_age=config.retentionAge or 0,
                num_replicas=config.replicas,
                republish=RePublish(src=everything, dest=numbers, headers_only=True),
            ),
            ("max_bytes", "max_age", "num_replicas", "republish"),
        )

    async def _ensure(self, js: Any, wanted: Any, kept: tuple[str, ...]) -> Any:
        """
        Create the JetStream stream C{wanted} describes, or make the
        C{kept} fields of an existing one as C{wanted}'s.

        @raise WrongSubjects: if one exists with other subjects.
        """
        from nats.js.errors import BadRequestError, NotFoundError

        name = wanted.name
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            try:
                return await js.add_stream(wanted)
            except BadRequestError:
                # Another node made it meanwhile (or an earlier try of ours
                # whose answer was lost), perhaps not quite alike.
                info = await js.stream_info(name)
        current = info.config
        if current.subjects != wanted.subjects:
            raise WrongSubjects(
                f"JetStream stream {name} holds subjects {' '.join(current.subjects or [])},"
                f" not {wanted.subjects[0]}: another --cluster-subject's, or an older streamd's;"
                f" delete it (nats stream rm {name}) or choose another --cluster-subject"
            )
        if any((getattr(current, field) or 0) != (getattr(wanted, field) or 0) for field in kept):
            for field in kept:
                setattr(current, field, getattr(wanted, field))
            return await js.update_stream(current)
        return info

    async def _consume(self) -> None:
        """
        Read the stream in order from L{expected} on, with an ordered
        consumer: a push consumer with flow control, which also starts again
        by itself when it misses messages or heartbeats.
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
            self.routes.everything,
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
        """
        A batch from the stream: check it, number it, and hand it to the
        reactor.
        """
        seq = msg.metadata.sequence.stream
        if seq < self.expected:
            return
        self.expected = seq + 1
        assert self._progress is not None
        self._progress.set()
        self._accept(msg.subject, msg.data, msg.headers or {})

    def _accept(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """
        Number the batch C{data} (on C{subject}, with C{headers}) in its
        stream and queue it for the reactor, unless a check fails.
        """
        msgId = headers.get(MSG_ID, "")
        node, _, token = msgId.partition("-")
        first = headers.get(FIRST, "")
        if not (NODE_ID.match(node) and token and _DIGITS.match(first)):
            self._inReactor(self.dropped, Drop.BAD_HEADER, node, subject)
            return
        signer = self.signer
        if signer is not None and not signer.verify(headers.get(SIGNATURE), data, msgId, first, subject):
            self._inReactor(self.dropped, Drop.UNSIGNED, node, subject)
            return
        name = self.routes.name(subject)
        try:
            checkName(name)
        except BadName:
            self._inReactor(self.dropped, Drop.NO_STREAM, node, subject)
            return
        decoder = INT32.decoder(len(data))
        payloads, raw = decoder.feed(data)
        if decoder.error is not None or len(raw) != len(data):
            self._inReactor(self.dropped, Drop.NOT_FRAMES, node, subject)
            return
        number = int(first)
        if number < self.numbers.get(name, 1):
            self._inReactor(self.dropped, Drop.STALE, node, subject)
            return
        # From here on the batch holds its numbers on every node; what this
        # node does not deliver is a gap here.
        self.numbers[name] = number + len(payloads)
        self._looked.pop(name, None)
        runs = None
        if node == self.node:
            batch = self._attempts.get(msgId)
            if batch is None or batch.data != data or batch.stream != name:
                self._inReactor(self.dropped, Drop.FORGED, node, subject)
                return
            self._done(batch)
            runs = batch.runs
        if payloads and max(map(len, payloads)) > self.maxMessageSize:
            self._inReactor(self.dropped, Drop.TOO_LARGE, node, subject)
            return
        with self._lock:
            wake = not self._read
            self._read.append((name, number, payloads, data, runs, node))
        if wake:
            self._inReactor(self._publishReceived)

    def _done(self, batch: _Batch) -> None:
        """
        C{batch} is back from the stream.
        """
        for attempt in batch.attempts:
            self._attempts.pop(attempt, None)
            self._inflight.discard(attempt)
        if self._pending and self._pending[0] is batch:
            self._pending.popleft()
            self._sent = max(0, self._sent - 1)
        else:
            index = self._pending.index(batch)
            del self._pending[index]
            if index < self._sent:
                self._sent -= 1
        with self._lock:
            self._outBytes -= len(batch.data)
        self._inReactor(self._countSent, batch.count)
        self._wakeSender()

    async def _acked(self, msg: Any) -> None:
        """
        The stream's answer to an attempt: room in the window, or a broken
        chain.
        """
        attempt = msg.subject.rpartition(".")[2]
        if attempt not in self._inflight:
            return
        self._inflight.discard(attempt)
        self._ackBy = asyncio.get_running_loop().time() + ACK_TIMEOUT
        data = msg.data
        if not data.startswith(b"{") or b'"error"' in data or b'"duplicate"' in data:
            if not any(code in data for code in _CONFLICTS):
                self._inReactor(self._publishedBadly, data.decode(errors="replace")[:200] or "no responders")
            self._breakChain()
        self._wakeSender()

    def _breakChain(self) -> None:
        """
        The batches sent may not all be in the stream: stop sending until
        the stream is read through.
        """
        self._broken = True
        self._wakeSender()

    async def _publisher(self, nc: Any, inbox: str) -> None:
        """
        Publish what the reactor queued into the stream, in order, until
        cancelled.
        """
        from nats.errors import Error as NatsError

        wake = self._wake
        connected = self._connectedEvent
        assert wake is not None and connected is not None
        clock = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(wake.wait(), max(0.0, self._ackBy - clock.time()) if self._inflight else None)
            except asyncio.TimeoutError:
                pass
            if self._inflight and clock.time() >= self._ackBy and not self._broken:
                self._inReactor(self._publishedBadly, f"no acknowledgement for {ACK_TIMEOUT:g} s")
                self._breakChain()
            wake.clear()
            await connected.wait()
            if self._broken:
                await self._mend()
                continue
            self._take(nc.max_payload - HEADER_ROOM)
            try:
                await self._lookUp()
                await self._send(nc, inbox)
            except NatsError as e:
                self._inReactor(self._publishedBadly, str(e) or type(e).__name__)
                self._breakChain()

    def _take(self, room: int) -> None:
        """
        Move what the reactor queued into batches of one stream each, of at
        most C{room} bytes.
        """
        with self._lock:
            queued, self._queued = self._queued, []
        pending = self._pending
        # A batch once sent stays as it was (it is no longer open): an
        # earlier attempt may yet arrive, and must be what is sent again.
        opened = self._open
        for stream, block, count, sender in queued:
            if len(block) <= room:
                pieces = [(block, count)]
            else:
                pieces = [(block[start:stop], 1) for start, stop in frameSpans(block)]
            for piece, n in pieces:
                if len(piece) > room:
                    self._inReactor(self._tooLarge, len(piece), room)
                    with self._lock:
                        self._outBytes -= len(piece)
                    continue
                last = opened.get(stream)
                if last is None or len(last.data) + len(piece) > room:
                    last = opened[stream] = _Batch(stream)
                    pending.append(last)
                last.add(piece, n, sender)

    async def _send(self, nc: Any, inbox: str) -> None:
        """
        Send the batches not sent yet, while the window has room.
        """
        for subject, data, headers in self._choose():
            await nc.publish(subject, data, reply=f"{inbox}.{headers[MSG_ID]}", headers=headers)

    def _choose(self) -> list[tuple[str, bytes, dict[str, str]]]:
        """
        Choose the batches to send now, and chain them: each numbered after
        what the chain holds of its stream.  A batch under L{FULL} waits
        while one of its stream is in flight, and one of a stream whose
        numbers are not known yet (L{_lookUp}) waits for them; so do the
        batches of its stream behind it, while the other streams' go past.
        Chosen at once, so that batches coming back meanwhile cannot upset
        the order.

        @return: the subject, frames and headers of each, in order.
        """
        pending = self._pending
        flying = {self._attempts[attempt].stream for attempt in self._inflight}
        waiting: set[str] = set()
        chosen = []
        index = self._sent
        while index < len(pending) and len(self._inflight) < WINDOW:
            batch = pending[index]
            stream = batch.stream
            known = stream in self.numbers or stream in self._looked
            if stream in waiting or not known or (stream in flying and len(batch.data) < FULL):
                waiting.add(stream)
                index += 1
                continue
            if index != self._sent:
                # Sent ahead of other streams' waiting batches: the sent
                # ones stay first.
                del pending[index]
                pending.insert(self._sent, batch)
            index += 1
            if self._open.get(stream) is batch:
                del self._open[stream]
            attempt = f"{self.node}-{secrets.token_hex(8)}"
            if self._tail is None:
                self._next.clear()
                headers = {EXPECTED_LAST_SEQUENCE: str(self.expected - 1)}
            else:
                headers = {EXPECTED_LAST_ID: self._tail}
            first = self._next.get(stream) or self.numbers.get(stream) or self._looked[stream]
            subject = self.routes.subject(stream)
            headers[MSG_ID] = attempt
            headers[FIRST] = str(first)
            headers[COUNT] = str(batch.count)
            if self.signer is not None:
                headers[SIGNATURE] = self.signer.sign(batch.data, attempt, str(first), subject)
            batch.attempts.append(attempt)
            self._attempts[attempt] = batch
            if not self._inflight:
                self._ackBy = asyncio.get_running_loop().time() + ACK_TIMEOUT
            self._inflight.add(attempt)
            flying.add(stream)
            self._sent += 1
            self._tail = attempt
            self._next[stream] = first + batch.count
            chosen.append((subject, batch.data, headers))
        return chosen

    async def _lookUp(self) -> None:
        """
        Learn from the numbers stream the next number of each stream that
        waits to be sent and that this node has read nothing of (L{LOOKUPS}
        at a time): one whose batches all left the JetStream stream, or a
        new one.
        """
        unknown = []
        for index in range(self._sent, len(self._pending)):
            stream = self._pending[index].stream
            if stream not in self.numbers and stream not in self._looked and stream not in unknown:
                unknown.append(stream)
                if len(unknown) == LOOKUPS:
                    self._wakeSender()
                    break
        if not unknown:
            return
        found = await asyncio.gather(*map(self._lastNumber, unknown))
        for stream, number in zip(unknown, found, strict=True):
            if number is None:
                # JetStream did not answer: the stream's batches wait.
                asyncio.get_running_loop().call_later(self.config.reconnectWait, self._wakeSender)
            elif stream not in self.numbers:
                self._looked[stream] = number

    async def _lastNumber(self, stream: str) -> int | None:
        """
        The next number of C{stream} after its last batch that entered the
        JetStream stream (1 if none ever did), as the numbers stream keeps
        it; C{None} if JetStream does not answer.
        """
        from nats.js.errors import NotFoundError

        config = self.config
        try:
            last = await self._js.get_last_msg(config.streamName + NUMBERS, f"{config.subject}{NUMBERS}.{stream}")
        except asyncio.CancelledError:
            raise
        except NotFoundError as e:
            if e.err_code == NO_MESSAGE:
                return 1
            self._inReactor(self._noJetStream, str(e))
            return None
        except Exception as e:
            self._inReactor(self._noJetStream, str(e) or type(e).__name__)
            return None
        headers = last.headers or {}
        first, count = headers.get(FIRST, ""), headers.get(COUNT, "")
        if not (_DIGITS.match(first) and _DIGITS.match(count)):
            return 1
        return int(first) + int(count)

    async def _mend(self) -> None:
        """
        After a broken chain: read the stream through its last message, so
        that every batch of ours it holds is back, and send the others again.
        """
        assert self._progress is not None
        try:
            info = await self._js.stream_info(self.config.streamName)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._inReactor(self._noJetStream, str(e) or type(e).__name__)
            await asyncio.sleep(self.config.reconnectWait)
            self._wakeSender()
            return
        last = info.state.last_seq
        if info.state.first_seq > last >= self.expected:
            # The stream holds nothing this node has not read: nothing more
            # will come to read through.
            self.expected = last + 1
        while self.expected <= last:
            self._progress.clear()
            try:
                await asyncio.wait_for(self._progress.wait(), WATCH_SECONDS)
            except asyncio.TimeoutError:
                # The watch starts a stuck consumer again; look again.
                self._wakeSender()
                return
        self._broken = False
        self._inflight.clear()
        self._sent = 0
        self._tail = None
        self._wakeSender()

    def _tooLarge(self, size: int, room: int) -> None:
        self._countDropped(1, f"a {size}-byte message is over what fits in a NATS message ({room} bytes)")


def _created(info: Any) -> str:
    created = info.created
    return created.isoformat() if created is not None else ""
