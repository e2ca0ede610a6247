"""
The scenarios of named streams (#23): many streams at a slow rate, pattern
subscriptions against exact ones, subscribing and unsubscribing at speed,
and what an idle stream costs.

Their clients speak C{seq} version 4 over plain sockets, as a real client
does: a HELLO that asks for no stream (start NONE), then SUB, UNSUB, SPUB
and PING frames; every frame the daemon sends is split off its int32
length and decoded (L{StreamReader}), each stream's messages checked to
follow on from its STREAM frame, REFUSED and BYE taken as errors.
"""

from __future__ import annotations

import select
import selectors
import socket
import time
from array import array
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from struct import Struct

from bench.children import Child, Children, Report, Shared
from bench.figures import percentile
from bench.load import Reader, connect
from bench.proc import cpuSeconds
from bench.records import STAMP
from bench.scenarios import (
    DONE_SECONDS,
    IDLE_SETUP_SECONDS,
    LATE_SECONDS,
    SETUP_SECONDS,
    Figures,
    MiB,
    Settings,
    _Sample,
    _usage,
)
from bench.servers import BenchError, Server, startStreamd
from streamd.seqframing import (
    STREAMS_VERSION,
    Batch,
    Bye,
    ClientHello,
    Gap,
    Msg,
    Ping,
    Pong,
    Refused,
    SBatch,
    ServerHello,
    SGap,
    SMsg,
    SPub,
    Start,
    StreamStart,
    Sub,
    Unsub,
    decodeServerFrame,
    encode,
    framed,
)

SIZE = 64
"""
The payload of every message published by name: a stamp and zeros.
"""
TIMED_CONNECTIONS = 10
"""
Subscriber connections that time their messages (the others count them).
"""
PUBLISH_BURST = 1000
"""
Messages published by name in one write at most.
"""
CHURN_NAMES = 1000
"""
The streams the churning client subscribes to and unsubscribes from in turn.
"""
CHURN_BURST = 500
"""
Pairs of SUB and UNSUB sent at most in one write, each write followed by a
PING.
"""
CHURN_IN_FLIGHT = 4
"""
PINGs left unanswered at most: past that the churning client waits, so the
rate it reaches is the daemon's, not its queue's.
"""
STREAM_MARGIN = 100

_LENGTH = Struct(">I")
_HELLO = framed(ClientHello(STREAMS_VERSION, Start.NONE, bytes(8), 0))
_PING = framed(Ping())
_PONG = framed(Pong())


class StreamReader:
    """
    What a version 4 client makes of the bytes the daemon sends it: frames
    split off their lengths and decoded, each stream followed from its
    STREAM frame on, its messages counted (and their stamps kept, if
    C{stamped}) and checked to follow on, gaps moving it on.

    @ivar messages: messages received, in SMSG and SBATCH frames.
    @ivar started: STREAM frames received.
    @ivar pongs: PONG frames received.
    @ivar pings: PING frames received and not yet answered (L{answer}).
    @ivar stamps: when C{stamped}, the L{STAMP} of each message since the
        caller last cleared it.
    """

    def __init__(self, stamped: bool = False) -> None:
        self.stamped = stamped
        self.hello: ServerHello | None = None
        self.names: dict[int, str] = {}
        self.next: dict[int, int] = {}
        self.messages = 0
        self.started = 0
        self.pongs = 0
        self.pings = 0
        self.stamps: list[int] = []
        self._held = bytearray()

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """
        Take the next bytes received.

        @return: how many messages they completed.
        @raise ConnectionError: for a BYE or a REFUSED frame.
        @raise ValueError: for a message out of sequence, of a stream never
            announced, or a frame a version 4 session is never sent.
        """
        held = self._held
        held += data
        before = self.messages
        pos, end = 0, len(held)
        while end - pos >= 4:
            (length,) = _LENGTH.unpack_from(held, pos)
            if end - pos - 4 < length:
                break
            self._frame(bytes(held[pos + 4 : pos + 4 + length]))
            pos += 4 + length
        del held[:pos]
        return self.messages - before

    def _frame(self, payload: bytes) -> None:
        frame = decodeServerFrame(payload)
        if isinstance(frame, SMsg):
            self._messages(frame.stream, frame.seq, (frame.payload,))
        elif isinstance(frame, SBatch):
            self._messages(frame.stream, frame.first, frame.payloads)
        elif isinstance(frame, StreamStart):
            self.names[frame.number] = frame.name
            self.next[frame.number] = frame.next
            self.started += 1
        elif isinstance(frame, SGap):
            if frame.last >= frame.first:
                self.next[frame.stream] = frame.last + 1
        elif isinstance(frame, Pong):
            self.pongs += 1
        elif isinstance(frame, Ping):
            self.pings += 1
        elif isinstance(frame, ServerHello):
            if frame.version != STREAMS_VERSION:
                raise ValueError(f"the daemon answered version {frame.version}, not {STREAMS_VERSION}")
            self.hello = frame
        elif isinstance(frame, Refused):
            raise ConnectionError(f"the daemon refused {frame.subject!r}: {frame.text}")
        elif isinstance(frame, Bye):
            raise ConnectionError(f"the daemon said BYE {frame.code}: {frame.text}")
        elif isinstance(frame, (Msg, Batch, Gap)):
            raise ValueError(f"a version 4 session was sent {type(frame).__name__}")

    def _messages(self, number: int, first: int, payloads: Sequence[bytes]) -> None:
        expected = self.next.get(number)
        if expected is None:
            raise ValueError(f"messages of stream number {number}, never announced")
        if first != expected:
            name = self.names[number]
            raise ValueError(f"stream {name}: message {first} came when {expected} was next")
        self.next[number] = first + len(payloads)
        self.messages += len(payloads)
        if self.stamped:
            self.stamps.extend(STAMP.unpack_from(payload)[0] for payload in payloads)

    def answer(self, sock: socket.socket) -> None:
        """
        Answer the daemon's PINGs received so far.
        """
        if self.pings:
            sock.sendall(_PONG * self.pings)
            self.pings = 0


class Publications:
    """
    SPUB frames of C{size}-byte stamped payloads to C{names}, their heads
    made once (a publisher of 10,000 streams at 1 msg/s each makes 10,000
    frames a second).
    """

    def __init__(self, names: Sequence[str], size: int = SIZE) -> None:
        self.names = names
        self._filler = bytes(size - STAMP.size)
        self._heads = [
            _LENGTH.pack(len(head) + size) + head for head in (encode(SPub(n, b"")) for n in names)
        ]

    def frame(self, index: int, stamp: int) -> bytes:
        """
        The SPUB of a message stamped C{stamp} to C{names[index]}.
        """
        return self._heads[index] + STAMP.pack(stamp) + self._filler


def subscriptions(subjects: Sequence[str]) -> bytes:
    """
    The SUB frames (from the next message) of C{subjects}.
    """
    return b"".join(framed(Sub(Start.NEWEST, subject)) for subject in subjects)


def open4(port: int) -> tuple[socket.socket, StreamReader]:
    """
    A blocking version 4 connection to the daemon's seq listener that asked
    for no stream, once the daemon has answered its HELLO.
    """
    sock = connect(port)
    reader = StreamReader()
    sock.sendall(_HELLO)
    roundTrip(sock, reader, b"")
    return sock, reader


def roundTrip(
    sock: socket.socket, reader: StreamReader, frames: bytes, timeout: float = IDLE_SETUP_SECONDS
) -> float:
    """
    Send C{frames} and a PING on the blocking C{sock}, and read what the
    daemon sends until its PONG.

    @return: the seconds it took.
    """
    start = time.monotonic()
    pongs = reader.pongs
    sock.sendall(frames + _PING)
    buffer = bytearray(1 << 20)
    while reader.pongs <= pongs:
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"no PONG within {timeout:g} s")
        received = sock.recv_into(buffer)
        if not received:
            raise ConnectionError("the daemon closed the connection")
        reader.feed(memoryview(buffer)[:received])
        reader.answer(sock)
    return time.monotonic() - start


def streamHolder(
    report: Report,
    port: int,
    plan: Sequence[tuple[int, Sequence[str]]],
    slot: int,
    shared: Shared,
    deadline: float,
) -> bytes:
    """
    Hold one connection per C{(number, subjects)} of C{plan}, subscribed to
    C{subjects} (sent together, then a PING), counting into
    C{shared.counts[slot]} what they receive; the connections numbered
    below L{TIMED_CONNECTIONS} time the messages published in the latency
    window.  Reports C{"ready"} with the seconds until every subscription
    was answered, and the STREAM frames received.

    @return: the latencies, in nanoseconds, as a native C{array("q")}.
    """
    selector = selectors.DefaultSelector()
    reader = Reader()
    start = time.monotonic()
    waiting: set[StreamReader] = set()
    for number, subjects in plan:
        sock = connect(port)
        sock.sendall(_HELLO + subscriptions(subjects) + _PING)
        sock.setblocking(False)
        state = StreamReader(number < TIMED_CONNECTIONS)
        selector.register(sock, selectors.EVENT_READ, state)
        waiting.add(state)
    counts, control = shared.counts, shared.control
    latencies = array("q")
    ready = False
    try:
        while not shared.stopping and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):
                state = key.data
                sock = key.fileobj  # type: ignore[assignment]
                try:
                    received = reader.read(sock)
                except BlockingIOError:
                    continue
                if not received:
                    raise ConnectionError(f"the daemon closed a subscriber after {state.messages} messages")
                now = time.monotonic_ns()
                counts[slot] += state.feed(memoryview(reader.buffer)[:received])
                state.answer(sock)
                if state.pongs:
                    waiting.discard(state)
                if state.stamps:
                    low, high = control[Shared.WINDOW_START], control[Shared.WINDOW_END]
                    latencies.extend([now - s for s in state.stamps if low <= s < high])
                    state.stamps.clear()
            if not ready and not waiting:
                ready = True
                started = sum(key.data.started for key in selector.get_map().values())
                report("ready", (time.monotonic() - start, started))
        if not ready:
            raise TimeoutError(f"{len(waiting)} connections were not subscribed in time")
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    return latencies.tobytes()


def namePublisher(
    report: Report,
    port: int,
    names: Sequence[str],
    rate: int,
    prime: bool,
    shared: Shared,
    deadline: float,
) -> int:
    """
    On one connection, publish C{rate} messages a second by name, to each
    of C{names} in turn, each stamped with the time it is sent; messages
    that fall due together go out in one write.  With C{prime}, first
    publish one message to each name (so the streams exist) and wait for
    the daemon to have taken them.  Reports C{"ready"}, then waits for
    L{Shared.GO}.

    @return: messages sent, after the priming ones.
    """
    sock, state = open4(port)
    publications = Publications(names)
    if prime:
        roundTrip(sock, state, b"".join(publications.frame(i, 0) for i in range(len(names))))
    report("ready", None)
    control = shared.control
    reader = Reader()
    while not control[Shared.GO]:
        if shared.stopping or time.monotonic() > deadline:
            raise TimeoutError("never told to publish")
        # The daemon's heartbeat PINGs are answered while it waits: the
        # subscribers of a large run take longer than two heartbeats.
        if select.select([sock], [], [], 0.001)[0]:
            _answerWith(sock, state, reader)
    frame = publications.frame
    sent = 0
    start = time.monotonic_ns()
    count = len(names)
    with sock:
        while not shared.stopping and time.monotonic() < deadline:
            now = time.monotonic_ns()
            due = min((now - start) * rate // 1_000_000_000 - sent, PUBLISH_BURST)
            if due <= 0:
                time.sleep(max((start + (sent + 1) * 1e9 / rate - now) / 1e9, 0))
                continue
            sock.sendall(b"".join([frame((sent + i) % count, now) for i in range(due)]))
            sent += due
            control[Shared.PUBLISHED] = sent
            if select.select([sock], [], [], 0)[0]:
                _answerWith(sock, state, reader)
    return sent


def _answerWith(sock: socket.socket, state: StreamReader, reader: Reader) -> None:
    """
    Read what the daemon sent a publisher (PINGs, or a REFUSED, which
    L{StreamReader.feed} raises), and answer its PINGs.
    """
    received = reader.read(sock)
    if not received:
        raise ConnectionError("the daemon closed the publisher's connection")
    state.feed(memoryview(reader.buffer)[:received])
    state.answer(sock)


def churner(
    report: Report, port: int, rate: int, held: int, shared: Shared, deadline: float
) -> tuple[int, int]:
    """
    On one connection, subscribe to C{held} streams and keep them; then
    subscribe to and unsubscribe from L{CHURN_NAMES} other streams in turn,
    C{rate} pairs a second (0: as fast as the daemon answers), each write
    of pairs followed by a PING; L{Shared.PUBLISHED} counts the pairs the
    daemon has answered (the PONG after them came), and the client waits
    while L{CHURN_IN_FLIGHT} PINGs are unanswered.  Reports C{"ready"}
    once the held subscriptions are answered.

    @return: pairs sent, and STREAM frames received.
    """
    sock, state = open4(port)
    if held:
        roundTrip(sock, state, subscriptions([f"held.{i}" for i in range(held)]))
    pairs = [
        framed(Sub(Start.NEWEST, f"churn.{i}")) + framed(Unsub(f"churn.{i}")) for i in range(CHURN_NAMES)
    ]
    report("ready", None)
    reader = Reader()
    control = shared.control
    unanswered: deque[int] = deque()
    sent = 0
    start = time.monotonic_ns()
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    with sock, selector:
        while not shared.stopping and time.monotonic() < deadline:
            now = time.monotonic_ns()
            due = CHURN_BURST if not rate else (now - start) * rate // 1_000_000_000 - sent
            due = min(due, CHURN_BURST)
            if due > 0 and len(unanswered) < CHURN_IN_FLIGHT:
                sock.sendall(b"".join([pairs[(sent + i) % CHURN_NAMES] for i in range(due)]) + _PING)
                sent += due
                unanswered.append(sent)
                wait = 0.0
            else:
                wait = 0.001
            if not selector.select(wait):
                continue
            received = sock.recv_into(reader.buffer)
            if not received:
                raise ConnectionError("the daemon closed the churning connection")
            pongs = state.pongs
            state.feed(memoryview(reader.buffer)[:received])
            state.answer(sock)
            for _ in range(state.pongs - pongs):
                control[Shared.PUBLISHED] = unanswered.popleft()
    return sent, state.started


def _spread(count: int, processes: int) -> list[list[int]]:
    """
    The connection numbers of each of C{processes} processes.
    """
    return [list(range(p, count, processes)) for p in range(processes)]


def _ready(children: Sequence[Child], server: Server) -> tuple[float, int]:
    """
    Wait for subscriber processes to report ready.

    @return: the slowest one's seconds, and the STREAM frames they got.
    """
    slowest, started = 0.0, 0
    for child in children:
        seconds, streams = child.expect("ready", IDLE_SETUP_SECONDS)
        slowest, started = max(slowest, seconds), started + streams
    server.checkAlive()
    return slowest, started


def _stop(
    server: Server, children: Children, publisher: Child, subscribers: Sequence[Child], published: int
) -> Figures:
    """
    Stop the publisher and the subscribers once the messages of the
    window had time to arrive.

    @return: the latency figures of the window.
    """
    time.sleep(LATE_SECONDS)
    children.stop()
    publisher.expect("done", DONE_SECONDS)
    latencies = array("q")
    for child in subscribers:
        latencies.frombytes(child.expect("done", DONE_SECONDS))
    server.checkAlive()
    if not latencies or not published:
        raise BenchError("no message was timed within the window")
    ordered = sorted(latencies)
    return {"p50_ms": percentile(ordered, 50) / 1e6, "p99_ms": percentile(ordered, 99) / 1e6}


def _traffic(
    server: Server,
    children: Children,
    publisher: Child,
    subscribers: Sequence[Child],
    settings: Settings,
) -> tuple[Figures, float, int, int]:
    """
    Let the publisher go, and measure after the warm-up.

    @return: the usage figures, the seconds measured, the messages
        published and delivered in them.
    """
    shared = children.shared
    shared.control[Shared.GO] = 1
    time.sleep(settings.warmup)
    shared.control[Shared.WINDOW_START] = time.monotonic_ns()
    before = _Sample.take(server, publisher, subscribers, shared)
    time.sleep(settings.duration)
    shared.control[Shared.WINDOW_END] = time.monotonic_ns()
    after = _Sample.take(server, publisher, subscribers, shared)
    figures = _usage(before, after, server)
    return (
        figures,
        after.time - before.time,
        after.published - before.published,
        after.delivered - before.delivered,
    )


def streams(server: Server, count: int, connections: int, rate: int, settings: Settings) -> Figures:
    """
    C{count} streams, each with one subscriber, C{rate} messages a second
    each: the subscriptions spread over C{connections} connections (each
    stream on one of them), the messages published by name on one.  Server
    memory empty, once subscribed, and under traffic; server CPU; latency.
    """
    names = [f"s.{i}" for i in range(count)]
    processes = min(settings.idleProcesses, connections)
    shared = Shared(processes)
    deadline = time.monotonic() + 2 * IDLE_SETUP_SECONDS + settings.warmup + settings.duration
    port = server.ports["seq"]
    empty = server.rss()
    with Children(shared) as children:
        subscribers = [
            children.start(
                f"stream subscribers {p + 1}",
                streamHolder,
                port,
                [(j, names[j::connections]) for j in mine],
                p,
                shared,
                deadline,
            )
            for p, mine in enumerate(_spread(connections, processes))
        ]
        subscribed, started = _ready(subscribers, server)
        if started != count:
            raise BenchError(f"{started} of {count} streams were announced to their subscribers")
        time.sleep(LATE_SECONDS)
        held = server.rss()
        publisher = children.start(
            "publisher", namePublisher, port, names, count * rate, False, shared, deadline
        )
        publisher.expect("ready", SETUP_SECONDS)
        figures, elapsed, published, delivered = _traffic(server, children, publisher, subscribers, settings)
        timed = _stop(server, children, publisher, subscribers, published)
    return {
        "subscribe_s": subscribed,
        "rss_empty_mib": empty / MiB,
        "rss_subscribed_mib": held / MiB,
        "kib_per_subscribed_stream": (held - empty) / count / 1024,
        "published_per_s": published / elapsed,
        "deliveries_per_s": delivered / elapsed,
        "delivered_share": delivered / published,
        "server_us_per_delivery": figures["server_cpu"] * elapsed / max(delivered, 1) * 1e6,  # type: ignore[operator]
        **timed,
        **figures,
    }


def patterns(
    server: Server, subscribers: int, count: int, rate: int, pattern: bool, settings: Settings
) -> Figures:
    """
    C{subscribers} connections, each sent all of C{count} streams
    (C{s.0}, C{s.1}, ...), made beforehand: by one pattern subscription
    (C{s.*}) each, or (not C{pattern}) by C{count} exact ones each; then
    C{rate} messages a second published by name over the streams in turn.
    Server CPU per delivery, and the time to subscribe.
    """
    names = [f"s.{i}" for i in range(count)]
    subjects = ["s.*"] if pattern else names
    processes = min(settings.idleProcesses, subscribers)
    shared = Shared(processes)
    deadline = time.monotonic() + 2 * IDLE_SETUP_SECONDS + settings.warmup + settings.duration
    port = server.ports["seq"]
    with Children(shared) as children:
        publisher = children.start("publisher", namePublisher, port, names, rate, True, shared, deadline)
        publisher.expect("ready", SETUP_SECONDS)
        empty = server.rss()
        holders = [
            children.start(
                f"subscribers {p + 1}",
                streamHolder,
                port,
                [(j, subjects) for j in mine],
                p,
                shared,
                deadline,
            )
            for p, mine in enumerate(_spread(subscribers, processes))
        ]
        subscribed, started = _ready(holders, server)
        if started != count * subscribers:
            raise BenchError(f"{started} of {count * subscribers} streams were announced to subscribers")
        time.sleep(LATE_SECONDS)
        held = server.rss()
        figures, elapsed, published, delivered = _traffic(server, children, publisher, holders, settings)
        timed = _stop(server, children, publisher, holders, published)
    return {
        "subscribe_s": subscribed,
        "rss_subscribed_mib": held / MiB,
        "kib_per_cursor": (held - empty) / (count * subscribers) / 1024,
        "published_per_s": published / elapsed,
        "deliveries_per_s": delivered / elapsed,
        "delivered_share": delivered / (published * subscribers),
        "server_ns_per_delivery": figures["server_cpu"] * elapsed / max(delivered, 1) * 1e9,  # type: ignore[operator]
        **timed,
        **figures,
    }


def subchurn(server: Server, rate: int, held: int, settings: Settings) -> Figures:
    """
    One connection holding C{held} subscriptions subscribes to and
    unsubscribes from other streams, C{rate} pairs a second (0: as fast as
    the daemon answers): the pairs the daemon answered a second, and its
    CPU.
    """
    shared = Shared(1)
    deadline = time.monotonic() + SETUP_SECONDS + settings.warmup + settings.duration + LATE_SECONDS
    with Children(shared) as children:
        client = children.start("churner", churner, server.ports["seq"], rate, held, shared, deadline)
        client.expect("ready", IDLE_SETUP_SECONDS)
        time.sleep(settings.warmup)
        before = (
            time.monotonic(),
            shared.control[Shared.PUBLISHED],
            cpuSeconds(server.pid),
            cpuSeconds(client.pid),
        )
        time.sleep(settings.duration)
        after = (
            time.monotonic(),
            shared.control[Shared.PUBLISHED],
            cpuSeconds(server.pid),
            cpuSeconds(client.pid),
        )
        rss = server.rss()
        children.stop()
        _, started = client.expect("done", DONE_SECONDS)
    server.checkAlive()
    elapsed = after[0] - before[0]
    pairs = after[1] - before[1]
    if not pairs or not started:
        raise BenchError("the daemon answered no SUB and UNSUB within the window")
    serverCpu = (after[2] - before[2]) / elapsed
    return {
        "offered_per_s": float(rate),
        "pairs_per_s": pairs / elapsed,
        "server_cpu": serverCpu,
        "server_us_per_pair": serverCpu * elapsed / pairs * 1e6,
        "client_cpu": (after[3] - before[3]) / elapsed,
        "server_rss_mib": rss / MiB,
    }


COST_DAEMONS = ("none", "repeated", "declared")
"""
The daemons of L{streamCost}: one with no stream but C{default}; one whose
command line declares C{default} N times (the command line's own memory);
one that declares N streams.
"""


def streamCost(workdir: Path, count: int, options: list[str], settings: Settings) -> Figures:
    """
    The memory of an idle, empty stream, from three daemons started
    together (L{COST_DAEMONS}), each with one version 4 client connected:
    the resident memory of C{count} declared streams over that of the same
    command line declaring one, per stream.  Then what one empty
    subscription adds to each of them (the client subscribes to every
    declared stream), and what a stream made by its first subscription
    costs (the client of the first daemon subscribes to C{count} new
    names).
    """
    names = [f"s.{i}" for i in range(count)]
    declares = {
        "none": [],
        "repeated": ["--declare", "default"] * count,
        "declared": [arg for name in names for arg in ("--declare", name)],
    }
    servers: dict[str, Server] = {}
    try:
        for name in COST_DAEMONS:
            folder = workdir / name
            folder.mkdir(exist_ok=True)
            servers[name] = startStreamd(
                folder, options + declares[name], listeners=["seq"], name=f"streamd {name}"
            )
        clients = {name: open4(server.ports["seq"]) for name, server in servers.items()}
        time.sleep(LATE_SECONDS)
        rss = {name: server.rss() for name, server in servers.items()}
        sock, reader = clients["declared"]
        roundTrip(sock, reader, subscriptions(names))
        sock, reader = clients["none"]
        roundTrip(sock, reader, subscriptions(names))
        time.sleep(LATE_SECONDS)
        declaredSubscribed = servers["declared"].rss()
        madeSubscribed = servers["none"].rss()
        for server in servers.values():
            server.checkAlive()
        for sock, _ in clients.values():
            sock.close()
    finally:
        for server in servers.values():
            server.stop()
    return {
        "rss_none_mib": rss["none"] / MiB,
        "rss_declared_mib": rss["declared"] / MiB,
        "argv_bytes": (rss["repeated"] - rss["none"]) / count,
        "idle_stream_bytes": (rss["declared"] - rss["repeated"]) / count,
        "subscription_bytes": (declaredSubscribed - rss["declared"]) / count,
        "subscribed_stream_bytes": (madeSubscribed - rss["none"]) / count,
    }
