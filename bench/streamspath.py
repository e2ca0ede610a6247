"""
The cost of publishing to many named streams, in process, with no
sockets: C{python bench/streamspath.py [--messages N]}.

A daemon is built in memory as C{twistd streamd} builds it (its streams
and a seq listener's factory); CONNECTIONS version 4 subscribers connect
on transports that drop what they are given, each subscribing to
STREAMS / CONNECTIONS streams (C{s.0} ... by SUB), and one version 4
publisher is handed one SPUB at a time, to each stream in turn, as the
bench's C{streams} scenario sends them at 10,000 messages a second.  What
is timed is the daemon's code from C{dataReceived} to the subscribers'
C{write}: the seq protocol, the session, the streams, C{Hub.publish}, the
cursors and the connections' mux (not the sockets, nor the reactor).

Run from C{/tmp} with C{PYTHONPATH} naming the tree to measure.  The
messages are handed over from inside C{itertools.starmap}, as in
L{bench.publishpath}: under C{valgrind --tool=callgrind
--toggle-collect=starmap_next}, the instructions counted over
C{--messages} are the deterministic cost of one message.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import deque
from itertools import count, starmap
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock

from bench.named import _HELLO, Publications, subscriptions
from bench.publishpath import NullTransport
from streamd.config import FlowControl, ServerConfig
from streamd.fanout.streams import Streams
from streamd.seqserver import SeqServerFactory
from streamd.stats import Stats


def daemon(streams: int, connections: int) -> tuple[Any, list[NullTransport]]:
    """
    The publisher's protocol, once every subscriber has subscribed, and
    the subscribers' transports.
    """
    clock = Clock()
    # Time moves on by 0.1 ms at each reading (about one a message, as at
    # 10,000 messages a second), the same on every run, and reading it
    # costs a call into C, as the reactor's time.time does.
    clock.seconds = count(1_800_000_000.0, 0.0001).__next__  # type: ignore[method-assign]
    registry = Streams(Stats(), clock, FlowControl())
    factory = SeqServerFactory(registry.default, clock, ServerConfig(), streams=registry)
    transports = []
    per = streams // connections
    for c in range(connections + 1):
        peer = IPv4Address("TCP", "127.0.0.1", 40000 + c)
        protocol = factory.buildProtocol(peer)
        transport = NullTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        names = [f"s.{i}" for i in range(c * per, (c + 1) * per)] if c < connections else []
        protocol.dataReceived(_HELLO + subscriptions(names))
        transports.append(transport)
    return protocol, transports[:-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=100)
    options = parser.parse_args()
    publisher, transports = daemon(options.streams, options.connections)
    frames = Publications([f"s.{i}" for i in range(options.streams)])
    reads = [frames.frame(i, 0) for i in range(options.streams)]
    before = sum(t.written for t in transports)
    dataReceived = publisher.dataReceived
    gc.collect()
    start = time.perf_counter()
    deque(starmap(dataReceived, ((reads[n % options.streams],) for n in range(options.messages))), maxlen=0)
    elapsed = time.perf_counter() - start
    if options.messages:
        print(f"{elapsed / options.messages * 1e9:,.0f} ns a message")
    assert sum(t.written for t in transports) - before >= options.messages * len(reads[0]), "messages missed"


if __name__ == "__main__":
    main()
