"""
What the child processes do: publish, subscribe, and hold idle connections,
with plain blocking or non-blocking sockets (the cheapest clients Python has).

Each body takes a C{report} function first (see L{Children.start}), reports
C{"ready"} once connected, and runs until L{Shared.stopping} or its
deadline, whichever comes first.
"""

from __future__ import annotations

import json
import os
import random
import select
import selectors
import socket
import ssl
import time
from array import array
from collections.abc import Sequence
from pathlib import Path

from bench.children import Report, Shared
from bench.records import STAMP
from bench.tls import secured
from bench.wire import AnyWalker, Wire

CHUNK = 1 << 20
BATCH = 256 * 1024
PACED_BURST = 1000
MAX_SAMPLES = 5_000_000
SOCKET_SECONDS = 30.0
WAIT_SECONDS = 0.0005
DRAIN_READS = 64


class Reader:
    """
    Reads sockets into one buffer made once.

    C{sock.recv(CHUNK)} allocates a fresh megabyte for every read, which
    glibc maps and unmaps each time: about 17 us per read, more than a small
    message's whole trip through the server, spent by the load generators on
    the cores the server shares with them.  A L{Walker} counts the records
    in the buffer where they are.
    """

    def __init__(self, size: int = CHUNK) -> None:
        self.buffer = bytearray(size)

    def read(self, sock: socket.socket) -> int:
        """
        Read what C{sock} has now into L{buffer}.

        @return: how many bytes came (0 at the end of the stream).
        """
        return sock.recv_into(self.buffer)


TLS_RECORD = 16 * 1024
"""
The most plaintext one TLS record carries, and so one read of a TLS
socket gives.
"""


class TlsReader(Reader):
    """
    Reads TLS sockets into one buffer made once, record after record.

    A read of a TLS socket gives one record's plaintext at most (16 KiB), so
    this reads until the socket has nothing more to decrypt or the buffer
    has no room for another whole record: one walk of the records of a
    megabyte, not of 16 KiB.  A record is never read in part, so none is
    left decrypted in the C{ssl} object, where a C{select} would not see it.
    """

    def __init__(self, size: int = CHUNK) -> None:
        super().__init__(size)
        self._view = memoryview(self.buffer)

    def read(self, sock: socket.socket) -> int:
        """
        @raise BlockingIOError: if no plaintext was ready (as a plain
            non-blocking socket does).
        """
        view, got = self._view, 0
        while len(view) - got >= TLS_RECORD:
            try:
                received = sock.recv_into(view[got:])
            except ssl.SSLWantReadError:
                if not got:
                    raise BlockingIOError("no TLS record is whole yet") from None
                break
            if not received:
                break
            got += received
        return got


def connect(port: int) -> socket.socket:
    """
    A blocking connection to the server under test.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_SECONDS)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _publisher(wire: Wire, port: int) -> socket.socket:
    """
    A connection opened as a publisher.
    """
    sock = connect(port)
    wire.open(sock, subscriber=False)
    return sock


def _drain(wire: Wire, sock: socket.socket, reader: Reader) -> None:
    """
    Read what the server sent a publisher (Redis's PUBLISH replies, a NATS
    PING) and let the wire answer or drop it.
    """
    for _ in range(DRAIN_READS):
        if not select.select([sock], [], [], 0)[0]:
            return
        received = reader.read(sock)
        if not received:
            raise ConnectionError("the server closed the publisher's connection")
        wire.replies(sock, reader.buffer[:received])


PAYLOADS = ("zeros", "json")
"""
What follows a payload's stamp: zero bytes (which any compression shrinks
to nothing), or JSON-like text (price ticks, as a browser's feed might carry).
"""


def filler(size: int, kind: str) -> bytes:
    """
    C{size} bytes of the payload kind C{kind} (L{PAYLOADS}), the same each
    time for one size.
    """
    if kind == "zeros":
        return bytes(size)
    rng = random.Random(size)
    ticks = []
    text = ""
    while len(text) < size:
        ticks.append(
            {
                "symbol": rng.choice(("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "TSLA")),
                "price": round(rng.uniform(10, 900), 2),
                "size": rng.randint(1, 5000),
                "side": rng.choice(("buy", "sell")),
                "venue": rng.choice(("XNAS", "XNYS", "BATS", "ARCX")),
                "time": 1_733_550_000_000 + rng.randint(0, 999_999),
            }
        )
        text = json.dumps(ticks, separators=(",", ":"))
    return text[:size].encode()


def _payload(size: int, kind: str = "zeros") -> bytes:
    return STAMP.pack(0) + filler(size - STAMP.size, kind)


def burstPublisher(
    report: Report,
    wire: Wire,
    port: int,
    size: int,
    window: int,
    shared: Shared,
    deadline: float,
    payload: str = "zeros",
) -> int:
    """
    Publish C{size}-byte messages of the kind C{payload} as fast as the
    server takes them, in batches built once, but never more than
    C{window} bytes ahead of the slowest subscriber.

    @return: messages sent.
    """
    sock = _publisher(wire, port)
    reader = Reader()
    report("ready", None)
    message = wire.message(_payload(size, payload))
    perBatch = max(1, BATCH // len(message))
    batch = message * perBatch
    ahead = max(window // len(message), 2 * perBatch) - perBatch
    counts, control = shared.counts, shared.control
    sent = 0
    with sock:
        while not shared.stopping and time.monotonic() < deadline:
            if sent - min(counts) > ahead:
                time.sleep(WAIT_SECONDS)
                continue
            sock.sendall(batch)
            sent += perBatch
            control[Shared.PUBLISHED] = sent
            _drain(wire, sock, reader)
    return sent


def pacedPublisher(
    report: Report,
    wire: Wire,
    port: int,
    size: int,
    rate: int,
    shared: Shared,
    deadline: float,
    payload: str = "zeros",
) -> int:
    """
    Publish C{rate} messages a second of the kind C{payload}, each stamped
    with the time it is sent; messages that fall due together go out in
    one write.

    @return: messages sent.
    """
    sock = _publisher(wire, port)
    reader = Reader()
    report("ready", None)
    header, rest, trailer = wire.header(size), filler(size - STAMP.size, payload), wire.trailer
    control = shared.control
    sent = 0
    start = time.monotonic_ns()
    with sock:
        while not shared.stopping and time.monotonic() < deadline:
            now = time.monotonic_ns()
            due = (now - start) * rate // 1_000_000_000 - sent
            if due <= 0:
                time.sleep((start + (sent + 1) * 1e9 / rate - now) / 1e9)
                continue
            due = min(due, PACED_BURST)
            sock.sendall((header + STAMP.pack(now) + rest + trailer) * due)
            sent += due
            control[Shared.PUBLISHED] = sent
            _drain(wire, sock, reader)
    return sent


def singlesPublisher(
    report: Report, wire: Wire, port: int, sizes: Sequence[int], shared: Shared, deadline: float
) -> int:
    """
    Publish one message of each of C{sizes} in turn, each once the
    subscriber has received the one before.

    @return: messages sent.
    """
    sock = _publisher(wire, port)
    reader = Reader()
    report("ready", None)
    built: dict[int, bytearray] = {}
    with sock:
        for sent, size in enumerate(sizes):
            if size not in built:
                built = {size: bytearray(wire.message(bytes(size)))}
            message = built[size]
            STAMP.pack_into(message, len(wire.header(size)), time.monotonic_ns())
            sock.sendall(message)
            while shared.counts[0] <= sent:
                if shared.stopping or time.monotonic() > deadline:
                    raise TimeoutError(f"a {size}-byte message did not arrive in time")
                _drain(wire, sock, reader)
                time.sleep(WAIT_SECONDS)
    return len(sizes)


def subscriber(
    report: Report,
    wire: Wire,
    port: int,
    slots: Sequence[int],
    maxLength: int,
    timed: int,
    shared: Shared,
    deadline: float,
    certificate: Path | None = None,
) -> bytes:
    """
    Hold one subscriber connection per slot of L{Shared.counts} and count
    what each receives there; on the slots below C{timed}, also time every
    message published within the latency window (the others are only
    counted, at C speed, so that many subscribers do not make the load
    generators the bottleneck).

    @param certificate: with one, every connection is a TLS one to a
        server that presents it.
    @return: the latencies, in nanoseconds, as a native C{array("q")}.
    """
    selector = selectors.DefaultSelector()
    reader = Reader() if certificate is None else TlsReader()
    for slot in slots:
        sock = connect(port)
        if certificate is not None:
            sock = secured(sock, certificate)
        wire.subscribe(sock)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, (slot, wire.walker(maxLength, slot < timed)))
    report("ready", None)
    counts, control, bytesIn = shared.counts, shared.control, shared.received
    latencies = array("q")
    try:
        while not shared.stopping and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):
                slot, walker = key.data
                try:
                    received = reader.read(key.fileobj)  # type: ignore[arg-type]
                except BlockingIOError:
                    continue
                if not received:
                    raise ConnectionError(
                        f"the server closed subscriber {slot} after {walker.records} messages"
                    )
                now = time.monotonic_ns()
                bytesIn[slot] += received
                counts[slot] += walker.feed(reader.buffer, received)
                if walker.controls:
                    _answer(wire, key.fileobj, walker)  # type: ignore[arg-type]
                if walker.stamps:
                    start, end = control[Shared.WINDOW_START], control[Shared.WINDOW_END]
                    if len(latencies) < MAX_SAMPLES:
                        latencies.extend([now - s for s in walker.stamps if start <= s < end])
                    walker.stamps.clear()
    finally:
        for key in list(selector.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        selector.close()
    return latencies.tobytes()


def _answer(wire: Wire, sock: socket.socket, walker: AnyWalker) -> None:
    """
    Answer the control records (NATS, seq or WebSocket pings) C{walker} has
    seen on C{sock}.
    """
    if walker.controls:
        reply = b"".join(map(wire.reply, walker.controls))
        walker.controls.clear()
        if reply:
            sock.sendall(reply)


class _Opening:
    """
    An idle connection whose subscription is not yet answered, and what the
    server has sent it so far.
    """

    def __init__(self) -> None:
        self.received = bytearray()


def holder(report: Report, wire: Wire, port: int, count: int, shared: Shared, deadline: float) -> int:
    """
    Hold C{count} idle subscriber connections, all opened at once: make the
    sockets, report C{"armed"}, and on L{Shared.GO} connect them all without
    waiting, sending each one's subscription as soon as it is connected.
    Report C{"ready"} once every subscription is answered, then
    C{"received"} with the latency of the first message on each (in
    nanoseconds) once every connection has one, then keep them open until
    told to stop.

    @return: how many connections had received nothing by the deadline.
    """
    selector = selectors.DefaultSelector()
    reader = Reader()
    request = wire.request(subscriber=True)
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket()
            socks.append(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
        report("armed", None)
        while not shared.control[Shared.GO]:
            if shared.stopping or time.monotonic() > deadline:
                raise TimeoutError("never told to connect")
            time.sleep(WAIT_SECONDS)
        for sock in socks:
            sock.connect_ex(("127.0.0.1", port))
            selector.register(sock, selectors.EVENT_WRITE, _Opening())
        opening = count
        while opening:
            if shared.stopping or time.monotonic() > deadline:
                raise TimeoutError(f"{opening} of {count} idle connections were not subscribed in time")
            for key, events in selector.select(0.05):
                sock = key.fileobj  # type: ignore[assignment]
                state = key.data
                if events & selectors.EVENT_WRITE:
                    error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if error:
                        raise ConnectionError(f"an idle connection failed: {os.strerror(error)}")
                    if request:
                        sock.send(request)
                    used = wire.answered(state.received, subscriber=True)
                else:
                    try:
                        received = reader.read(sock)
                    except BlockingIOError:
                        continue
                    if not received:
                        raise ConnectionError("the server closed an idle connection while it subscribed")
                    if not isinstance(state, _Opening):
                        if state.feed(reader.buffer, received):
                            raise ConnectionError(f"{wire.name} sent a message before it was published")
                        _answer(wire, sock, state)
                        continue
                    state.received += reader.buffer[:received]
                    used = wire.answered(state.received, subscriber=True)
                if used is None:
                    if events & selectors.EVENT_WRITE:
                        selector.modify(sock, selectors.EVENT_READ, state)
                    continue
                walker = wire.walker(1 << 20, stamped=True)
                if walker.feed(state.received[used:]):
                    raise ConnectionError(f"{wire.name} sent a message before it was published")
                _answer(wire, sock, walker)
                selector.modify(sock, selectors.EVENT_READ, walker)
                opening -= 1
        report("ready", None)
        latencies: list[int] = []
        while len(latencies) < count and not shared.stopping and time.monotonic() < deadline:
            for key, _ in selector.select(0.05):
                walker = key.data
                try:
                    received = reader.read(key.fileobj)  # type: ignore[arg-type]
                except BlockingIOError:
                    continue
                if not received:
                    raise ConnectionError("the server closed an idle connection")
                now = time.monotonic_ns()
                walker.feed(reader.buffer, received)
                _answer(wire, key.fileobj, walker)  # type: ignore[arg-type]
                if walker.stamps:
                    latencies.append(now - walker.stamps[0])
                    selector.unregister(key.fileobj)
        report("received", latencies)
        while not shared.stopping and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    return count - len(latencies)
