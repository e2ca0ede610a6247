"""
One run of each scenario against one running server: start the children,
measure, stop them, and return the figures.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from bench.children import Child, Children, Shared
from bench.figures import bottleneck, percentile
from bench.load import burstPublisher, connect, holder, pacedPublisher, singlesPublisher, subscriber
from bench.metrics import scrapeSeconds
from bench.proc import busySeconds, cores, cpuSeconds, openFiles
from bench.records import STAMP
from bench.servers import BenchError, Server
from bench.ssereader import countingSubscriber, ssecount
from bench.wire import Wire

MiB = 1024 * 1024
SETUP_SECONDS = 30.0
IDLE_SETUP_SECONDS = 120.0
LATE_SECONDS = 0.5
BROADCAST_SECONDS = 10.0
LARGE_SECONDS = 60.0
DONE_SECONDS = 10.0
DRIP_SIZE = 1 * MiB

TIMED_CONNECTIONS = 10
"""
Paced runs time the messages of this many subscriber connections at most,
and only count those of the others: at K=100 and 50,000 msg/s, timing all
five million deliveries a second would make the Python subscribers, not the
server, the bottleneck.
"""

Figures = dict[str, object]


@dataclass(frozen=True)
class Settings:
    """
    How long and how hard to run.

    @ivar window: bytes a burst publisher may be ahead of its slowest
        subscriber.
    @ivar subscriberProcesses: processes sharing the subscriber connections
        (0: one per CPU, at most one per connection).
    @ivar payload: what burst and paced payloads hold after their stamp
        (L{bench.load.PAYLOADS}).
    """

    duration: float = 3.0
    warmup: float = 1.0
    window: int = 16 * MiB
    subscriberProcesses: int = 0
    idleProcesses: int = 4
    payload: str = "zeros"


@dataclass(frozen=True)
class _Sample:
    """
    The counters and CPU times of a run at one moment.
    """

    time: float
    delivered: int
    received: int
    published: int
    server: float
    publisher: float
    subscribers: tuple[float, ...]
    machine: float

    @classmethod
    def take(cls, server: Server, publisher: Child, subscribers: Sequence[Child], shared: Shared) -> _Sample:
        return cls(
            time.monotonic(),
            sum(shared.counts),
            sum(shared.received),
            shared.control[Shared.PUBLISHED],
            cpuSeconds(server.pid),
            cpuSeconds(publisher.pid),
            tuple(cpuSeconds(s.pid) for s in subscribers),
            busySeconds(),
        )


def _usage(before: _Sample, after: _Sample, server: Server) -> Figures:
    """
    Server CPU and memory, and the CPU shares that say what limited the run.
    """
    elapsed = after.time - before.time
    serverCpu = (after.server - before.server) / elapsed
    publisherCpu = (after.publisher - before.publisher) / elapsed
    subscriberCpus = [(a - b) / elapsed for a, b in zip(after.subscribers, before.subscribers, strict=True)]
    busiest = max(subscriberCpus)
    # The machine's busy time also counts the softirqs that carry loopback
    # TCP, which no process is charged for, and anything else running.
    busy = max(serverCpu + publisherCpu + sum(subscriberCpus), (after.machine - before.machine) / elapsed)
    return {
        "server_cpu": serverCpu,
        "server_rss_mib": server.rss() / MiB,
        "publisher_cpu": publisherCpu,
        "subscriber_cpu": sum(subscriberCpus),
        "busiest_subscriber_cpu": busiest,
        "limit": bottleneck(serverCpu, publisherCpu, busiest, busy, cores()),
    }


def _subscribers(
    children: Children,
    server: Server,
    wire: Wire,
    k: int,
    maxLength: int,
    timed: int,
    processes: int,
    deadline: float,
) -> list[Child]:
    """
    C{k} subscriber connections spread over C{processes} processes (0: one
    per CPU), all connected and accepted; the first C{timed} ones time
    their messages.
    """
    count = min(k, processes or cores())
    port = server.ports[wire.listener]
    certificate = server.certificate if wire.secure else None
    if wire.countedInC:
        program = ssecount()
        started = [
            children.start(
                f"subscriber process {i + 1}",
                countingSubscriber,
                program,
                port,
                range(i, k, count),
                children.shared,
                deadline,
            )
            for i in range(count)
        ]
    else:
        started = [
            children.start(
                f"subscriber process {i + 1}",
                subscriber,
                wire,
                port,
                range(i, k, count),
                maxLength,
                timed,
                children.shared,
                deadline,
                certificate,
            )
            for i in range(count)
        ]
    for child in started:
        child.expect("ready", SETUP_SECONDS)
    server.waitClients(k, SETUP_SECONDS, wire.listener)
    return started


def burst(server: Server, wire: Wire, k: int, size: int, settings: Settings) -> Figures:
    """
    Deliveries per second with the publisher flat out.
    """
    shared = Shared(k)
    deadline = time.monotonic() + SETUP_SECONDS + settings.warmup + settings.duration
    with Children(shared) as children:
        subscribers = _subscribers(children, server, wire, k, size, 0, settings.subscriberProcesses, deadline)
        publisher = children.start(
            "publisher",
            burstPublisher,
            wire.publisher,
            server.port,
            size,
            settings.window,
            shared,
            deadline,
            settings.payload,
        )
        publisher.expect("ready", SETUP_SECONDS)
        time.sleep(settings.warmup)
        before = _Sample.take(server, publisher, subscribers, shared)
        time.sleep(settings.duration)
        after = _Sample.take(server, publisher, subscribers, shared)
        figures = _usage(before, after, server)
        children.stop()
        for child in (publisher, *subscribers):
            child.expect("done", DONE_SECONDS)
    server.checkAlive()
    elapsed = after.time - before.time
    deliveries = after.delivered - before.delivered
    if not deliveries:
        raise BenchError(f"no message reached a subscriber of {wire.name} in {elapsed:.1f} s")
    return {
        "deliveries_per_s": deliveries / elapsed,
        "mb_per_s": deliveries * size / elapsed / 1e6,
        "server_ns_per_delivery": figures["server_cpu"] * elapsed / deliveries * 1e9,  # type: ignore[operator]
        "wire_bytes_per_delivery": (after.received - before.received) / deliveries,
        **figures,
    }


def paced(server: Server, wire: Wire, k: int, size: int, rate: int, settings: Settings) -> Figures:
    """
    Publish-to-receive latency with the publisher at C{rate} messages a
    second.
    """
    shared = Shared(k)
    deadline = time.monotonic() + SETUP_SECONDS + settings.warmup + settings.duration + LATE_SECONDS
    with Children(shared) as children:
        subscribers = _subscribers(
            children, server, wire, k, size, TIMED_CONNECTIONS, settings.subscriberProcesses, deadline
        )
        publisher = children.start(
            "publisher",
            pacedPublisher,
            wire.publisher,
            server.port,
            size,
            rate,
            shared,
            deadline,
            settings.payload,
        )
        publisher.expect("ready", SETUP_SECONDS)
        time.sleep(settings.warmup)
        shared.control[Shared.WINDOW_START] = time.monotonic_ns()
        before = _Sample.take(server, publisher, subscribers, shared)
        time.sleep(settings.duration)
        shared.control[Shared.WINDOW_END] = time.monotonic_ns()
        after = _Sample.take(server, publisher, subscribers, shared)
        figures = _usage(before, after, server)
        time.sleep(LATE_SECONDS)
        children.stop()
        publisher.expect("done", DONE_SECONDS)
        latencies = array("q")
        for child in subscribers:
            latencies.frombytes(child.expect("done", DONE_SECONDS))
    server.checkAlive()
    if not latencies:
        raise BenchError(f"no message reached a subscriber of {wire.name} within the window")
    ordered = sorted(latencies)
    elapsed = after.time - before.time
    published = after.published - before.published
    return {
        "published_per_s": published / elapsed,
        "deliveries_per_s": (after.delivered - before.delivered) / elapsed,
        "p50_us": percentile(ordered, 50) / 1e3,
        "p99_us": percentile(ordered, 99) / 1e3,
        "p999_us": percentile(ordered, 99.9) / 1e3,
        "max_us": ordered[-1] / 1e3,
        "samples": len(ordered),
        "server_us_per_message": figures["server_cpu"] * elapsed / published * 1e6,  # type: ignore[operator]
        **figures,
    }


@dataclass
class _Storm:
    """
    Idle connections held open by the children L{storm} started.

    @ivar accepted: seconds until the server had accepted them all.
    @ivar subscribed: seconds until every subscription was answered.
    @ivar missed: once they are closed, how many received nothing.
    """

    holders: list[Child]
    accepted: float
    subscribed: float
    missed: int = 0
    heard: bool = False

    def broadcastLatencies(self) -> list[int]:
        """
        Once a message is published, the time it took to reach each
        connection, in nanoseconds, in order.
        """
        self.heard = True
        return sorted(latency for child in self.holders for latency in child.expect("received", BROADCAST_SECONDS))


@contextmanager
def storm(server: Server, wire: Wire, clients: int, settings: Settings) -> Iterator[_Storm]:
    """
    C{clients} connections that all connect at once (as after a restart or
    a network blip), each subscribing as soon as it is connected, held open
    until the block ends.
    """
    shared = Shared(0)
    deadline = time.monotonic() + 2 * IDLE_SETUP_SECONDS + BROADCAST_SECONDS
    with Children(shared) as children:
        count = min(settings.idleProcesses, clients)
        holders = [
            children.start(
                f"idle-connection process {i + 1}",
                holder,
                wire,
                server.port,
                len(range(i, clients, count)),
                shared,
                deadline,
            )
            for i in range(count)
        ]
        for child in holders:
            child.expect("armed", IDLE_SETUP_SECONDS)
        files = openFiles(server.pid)
        start = time.monotonic()
        shared.control[Shared.GO] = 1
        accepted = (
            server.waitAccepted(files + clients, clients, IDLE_SETUP_SECONDS, children.checkRunning) - start
        )
        for child in holders:
            child.expect("ready", IDLE_SETUP_SECONDS)
        held = _Storm(holders, accepted, time.monotonic() - start)
        yield held
        children.stop()
        if not held.heard:
            for child in holders:
                child.expect("received", DONE_SECONDS)
        held.missed = sum(child.expect("done", DONE_SECONDS) for child in holders)


def idle(server: Server, wire: Wire, clients: int, settings: Settings) -> Figures:
    """
    How fast the server accepts a L{storm} of C{clients} connections; its
    memory per idle connection; and how long one message takes to reach
    all of them.
    """
    before = server.rss()
    with storm(server, wire, clients, settings) as held:
        time.sleep(LATE_SECONDS)
        after = server.rss()
        with connect(server.port) as sock:
            wire.open(sock, subscriber=False)
            server.waitClients(clients + 1, SETUP_SECONDS)
            sock.sendall(wire.message(STAMP.pack(time.monotonic_ns()) + bytes(56)))
            latencies = held.broadcastLatencies()
    server.checkAlive()
    if held.missed:
        raise BenchError(f"{held.missed} of {clients} idle connections missed the broadcast of {server.name}")
    return {
        "accept_s": held.accepted,
        "accepts_per_s": clients / held.accepted,
        "subscribed_s": held.subscribed,
        "rss_before_mib": before / MiB,
        "rss_after_mib": after / MiB,
        "kib_per_connection": (after - before) / clients / 1024,
        "broadcast_p50_ms": percentile(latencies, 50) / 1e6,
        "broadcast_ms": latencies[-1] / 1e6,
    }


def scrape(server: Server, wire: Wire, clients: int, settings: Settings) -> Figures:
    """
    The time of one C{/metrics} scrape (the median of L{SCRAPES}) with no
    client connected, then with a L{storm} of C{clients} idle ones.
    """
    port = server.ports["http"]
    empty = scrapeSeconds(port, 0)
    with storm(server, wire, clients, settings):
        time.sleep(LATE_SECONDS)
        full = scrapeSeconds(port, clients)
    server.checkAlive()
    return {
        "scrape_ms_empty": empty[0] * 1e3,
        "scrape_ms": full[0] * 1e3,
        "scrape_max_ms": full[1] * 1e3,
        "scrape_growth": full[0] / empty[0],
    }


def drip(server: Server, wire: Wire, clients: int, settings: Settings) -> Figures:
    """
    Server memory while C{clients} clients send the first bytes of a 1 MiB
    message one byte per TCP segment, each in turn, for the run's duration
    (or until all but the last byte is sent), and once they have left.
    """
    message = wire.message(bytes(DRIP_SIZE))[:-1]
    before = server.rss()
    socks = [connect(server.port) for _ in range(clients)]
    try:
        server.waitClients(clients, SETUP_SECONDS)
        sent = 0
        deadline = time.monotonic() + settings.duration
        while sent < len(message) and time.monotonic() < deadline:
            byte = message[sent : sent + 1]
            for sock in socks:
                sock.sendall(byte)
            sent += 1
        time.sleep(LATE_SECONDS)
        held = server.rss()
    finally:
        for sock in socks:
            sock.close()
    server.waitClosed(SETUP_SECONDS)
    time.sleep(LATE_SECONDS)
    after = server.rss()
    server.checkAlive()
    return {
        "dripped_kib": clients * sent / 1024,
        "rss_before_mib": before / MiB,
        "rss_held_mib": held / MiB,
        "rss_left_mib": after / MiB,
        "rss_per_byte": (held - before) / (clients * sent),
    }


def large(server: Server, wire: Wire, sizes: Sequence[int], settings: Settings) -> dict[int, Figures]:
    """
    How long one message of each of C{sizes} takes from publisher to
    subscriber.
    """
    shared = Shared(1)
    shared.control[Shared.WINDOW_START] = 0
    deadline = time.monotonic() + SETUP_SECONDS + LARGE_SECONDS * len(sizes)
    with Children(shared) as children:
        (receiver,) = _subscribers(children, server, wire, 1, max(sizes), 1, 1, deadline)
        publisher = children.start(
            "publisher", singlesPublisher, wire.publisher, server.port, sizes, shared, deadline
        )
        publisher.expect("ready", SETUP_SECONDS)
        publisher.expect("done", LARGE_SECONDS * len(sizes))
        children.stop()
        latencies = array("q")
        latencies.frombytes(receiver.expect("done", DONE_SECONDS))
    server.checkAlive()
    if len(latencies) != len(sizes):
        raise BenchError(f"{len(latencies)} of {len(sizes)} large messages were timed on {server.name}")
    return {
        size: {
            "ms": latency / 1e6,
            "mb_per_s": size / latency * 1e3,
            "ms_per_mib": latency / 1e6 / (size / MiB),
        }
        for size, latency in zip(sizes, latencies, strict=True)
    }
