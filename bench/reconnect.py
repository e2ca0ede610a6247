"""
The C{resume} scenario: how long a C{seq} subscriber that reconnects waits
for its first resumed message while the stream goes on.
"""

from __future__ import annotations

import socket
import time

from bench.children import Children, Shared
from bench.figures import percentile
from bench.load import connect, pacedPublisher
from bench.scenarios import DONE_SECONDS, SETUP_SECONDS, Figures, Settings
from bench.servers import BenchError, Server
from bench.wire import ONE_STREAM_VERSION, Wire, seqFrame
from streamd.seqframing import (
    Batch,
    ClientHello,
    FrameType,
    Msg,
    Pong,
    ServerHello,
    Start,
    decodeServerFrame,
    framed,
)

RATE = 1_000
"""
Messages a second published while the subscriber comes and goes.
"""
SIZE = 64
AWAY_SECONDS = 0.02
"""
How long the subscriber stays disconnected: messages keep coming meanwhile
(20 at L{RATE}), so its first message after a reconnect is from the
history.
"""
TRIAL_SECONDS = 5.0


class _Frames:
    """
    The seq frames of one blocking connection, read as they come.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def next(self) -> Msg | ServerHello:
        """
        The next HELLO or message (a BATCH's first, which is what a
        resuming client waits for); PINGs are answered on the way.

        @raise BenchError: for a GAP, a BYE, or the end of the stream.
        """
        while True:
            found = seqFrame(self.buffer)
            if found is None:
                chunk = self.sock.recv(1 << 16)
                if not chunk:
                    raise BenchError("the seq listener closed a resuming connection")
                self.buffer += chunk
                continue
            payload, used = found
            del self.buffer[:used]
            frame = decodeServerFrame(payload)
            if isinstance(frame, Msg | ServerHello):
                return frame
            if isinstance(frame, Batch):
                return Msg(frame.first, frame.payloads[0])
            if payload[0] == FrameType.PING:
                self.sock.sendall(framed(Pong()))
            elif payload[0] in (FrameType.GAP, FrameType.BYE):
                raise BenchError(f"a resuming seq client got {frame}")


def _session(port: int, hello: ClientHello) -> tuple[bytes, Msg, float]:
    """
    Connect, send C{hello}, and read up to the first MSG: the server's
    epoch, that message, and the seconds from connecting until it came.
    """
    start = time.monotonic()
    with connect(port) as sock:
        sock.sendall(framed(hello))
        frames = _Frames(sock)
        greeting = frames.next()
        if not isinstance(greeting, ServerHello):
            raise BenchError(f"a seq listener sent {greeting} before its HELLO")
        first = frames.next()
        if not isinstance(first, Msg):
            raise BenchError("a seq listener sent a second HELLO")
        return greeting.epoch, first, time.monotonic() - start


def resume(server: Server, wire: Wire, trials: int, settings: Settings) -> Figures:
    """
    A subscriber that has seen message N disconnects, waits
    L{AWAY_SECONDS} while the publisher goes on, reconnects with
    C{RESUME(epoch, N)} and times connect() to receiving message N + 1;
    C{trials} times, each resuming after the message the last one got.
    """
    port = server.ports[wire.listener]
    shared = Shared(0)
    deadline = time.monotonic() + SETUP_SECONDS + trials * TRIAL_SECONDS
    with Children(shared) as children:
        publisher = children.start(
            "publisher", pacedPublisher, wire.publisher, server.port, SIZE, RATE, shared, deadline
        )
        publisher.expect("ready", SETUP_SECONDS)
        epoch, last, _ = _session(port, ClientHello(ONE_STREAM_VERSION, Start.NEWEST, bytes(8), 0))
        waits = []
        for _ in range(trials):
            time.sleep(AWAY_SECONDS)
            again, first, elapsed = _session(port, ClientHello(ONE_STREAM_VERSION, Start.RESUME, epoch, last.seq))
            if again != epoch or first.seq != last.seq + 1:
                raise BenchError(f"resuming after {last.seq} started at {first.seq}")
            waits.append(elapsed)
            last = first
        children.stop()
        publisher.expect("done", DONE_SECONDS)
    server.checkAlive()
    ordered = sorted(int(w * 1e9) for w in waits)
    return {
        "resume_p50_ms": percentile(ordered, 50) / 1e6,
        "resume_p99_ms": percentile(ordered, 99) / 1e6,
        "resume_max_ms": ordered[-1] / 1e6,
        "trials": trials,
    }
