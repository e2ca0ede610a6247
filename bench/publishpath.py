"""
The cost of publishing one batch to one stream, in process, with no
sockets: C{python bench/publishpath.py [--calls N] [--subscribers K] [--read-size R]}.

A daemon is built in memory as C{twistd streamd} builds it (its streams,
when the tree has them, and an int32 listener's factory); K int32
subscribers connect on transports that drop what they are given, and one
publisher's connection is handed the same read (ten 64 B frames) N times,
or, with C{--read-size}, the N reads' messages as one stream cut into reads
of R bytes, which end in the middle of a frame as a socket's reads do.
What is timed is the daemon's code from C{dataReceived} to the
subscribers' C{write}: the protocol, the session, C{Hub.publish}, the
history and the cursors.  With C{--fsync POLICY}, the stream's history is a
log in a new data directory (C{--data-dir}), and that time includes writing
each batch's record to it; time stands still, so no sync runs: what is timed
is the reactor thread's share.

Run from C{/tmp} with C{PYTHONPATH} naming the tree to measure, so that two
trees can be compared.  The reads are handed over from inside
C{itertools.starmap}, which nothing else here calls: under C{valgrind
--tool=callgrind --toggle-collect=starmap_next}, the instructions counted
are those of the loop alone, the same on every run of a tree
(C{PYTHONHASHSEED=0}, C{setarch -R}), and over C{--calls} they are the
cost of one read.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Iterable
from itertools import repeat, starmap
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

import streamd
from streamd.config import FlowControl, ServerConfig
from streamd.server import StreamServerFactory
from streamd.stats import Stats


class NullTransport(StringTransport):
    """
    A transport that counts what it is given and keeps none of it.
    """

    written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)


def daemon(subscribers: int, dataDir: str | None = None, fsync: str = "everysec") -> tuple[Any, list[NullTransport]]:
    """
    A factory of the tree under test, its stream's publisher's protocol,
    and its subscribers' transports; with C{dataDir}, its history is a log
    there, synced as C{fsync} says (in this thread, when the clock moves).
    """
    clock = Clock()
    # Time stands still, and reading it costs a call into C, as the
    # reactor's time.time does: the same instructions on every run.
    clock.seconds = repeat(1_800_000_000.0).__next__  # type: ignore[method-assign]
    stats = Stats()
    flow = FlowControl()
    try:
        from streamd.fanout.streams import Streams
    except ImportError:
        from streamd.fanout.hub import Hub

        factory = StreamServerFactory(Hub(stats, clock, flow), clock, ServerConfig())
    else:
        if dataDir is None:
            streams = Streams(stats, clock, flow)
        else:
            from streamd.durable.datadir import DataDir

            durable = DataDir(clock, dataDir, fsync, lambda work, *args: maybeDeferred(work, *args))
            streams = Streams(stats, clock, flow, dataDir=durable)
        factory = StreamServerFactory(streams.default, clock, ServerConfig(), streams=streams)
    transports = []
    for port in range(subscribers + 1):
        peer = IPv4Address("TCP", "127.0.0.1", 40000 + port)
        protocol = factory.buildProtocol(peer)
        transport = NullTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        transports.append(transport)
    return protocol, transports[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="reads handed to the publisher")
    parser.add_argument("--subscribers", type=int, default=30)
    parser.add_argument("--size", type=int, default=64, help="bytes of each of the read's messages")
    parser.add_argument("--per-read", type=int, default=10, help="messages in each read")
    parser.add_argument(
        "--read-size", type=int, default=0, help="cut the messages into reads of this many bytes (0: whole frames)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="times the whole is timed")
    parser.add_argument("--no-gc", action="store_true", help="with Python's cycle collector off")
    parser.add_argument("--fsync", help="with a data directory (a new one, deleted after), synced so")
    options = parser.parse_args()
    if options.no_gc:
        gc.disable()
    dataDir = None if options.fsync is None else tempfile.mkdtemp(prefix="publishpath-")
    try:
        measure(options, dataDir)
    finally:
        if dataDir is not None:
            shutil.rmtree(dataDir)


def measure(options: argparse.Namespace, dataDir: str | None) -> None:
    """
    Time the reads C{options} describe, on a daemon whose history is on
    disk in C{dataDir} if given.
    """
    publisher, transports = daemon(options.subscribers, dataDir, options.fsync or "everysec")
    read = (struct.pack(">I", options.size) + b"x" * options.size) * options.per_read
    size = options.read_size
    if size:
        stream = read * options.calls
        reads: Iterable[tuple[bytes]] = [(stream[at : at + size],) for at in range(0, len(stream), size)]
    else:
        reads = [(read,)] * options.calls
    dataReceived = publisher.dataReceived
    # Both trees start from the same collector's counts: a full collection
    # that one of them happens to reach in the loop is not its code's cost.
    gc.collect()
    for _ in range(options.rounds):
        start = time.perf_counter()
        deque(starmap(dataReceived, reads), maxlen=0)
        elapsed = time.perf_counter() - start
        if options.calls:
            print(
                f"{streamd.__file__}: {elapsed / options.calls * 1e9:,.0f} ns a read of {options.per_read} messages"
                f" to {options.subscribers} subscribers" + (f" (cut into reads of {size} bytes)" if size else "")
            )
    expected = options.rounds * options.calls * len(read)
    assert all(t.written >= expected for t in transports), "a subscriber missed messages"


if __name__ == "__main__":
    main()
