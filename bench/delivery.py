"""
Delivery scenarios for the shared history, against real daemon processes:

  - C{bulk}: C{--source stdin} fed 100-byte lines flat out through a pipe,
    read by C{python -m streamd.client} and by a frame-parsing stdlib reader
    (optionally beside a client that never reads): does every line arrive, in
    order, and how much memory does the daemon take?
  - C{stalled}: N subscribers that never read while one publisher sends 1 KiB
    messages at a steady rate: the server's memory growth, streamd against
    Redis (C{--compare redis}).
  - C{block}: C{--slow-consumer block}, a publisher at a steady rate and
    never-reading clients that keep reconnecting: does a healthy subscriber
    get every message, at the publisher's rate?

Run with C{python -m bench.delivery SCENARIO --help}.
"""

from __future__ import annotations

import argparse
import multiprocessing
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.proc import RssGrowth, raiseFileLimit, rssBytes
from bench.servers import Server, logFailures, startRedis, startStreamd, twistdCommand

MiB = 2**20
_HEADER = struct.Struct(">I")
_SERIAL = struct.Struct(">Q")
LINE = 100
END = b"end of the scenario"
"""
The last message of a paced publisher: readers stop at it.
"""


def line(number: int) -> bytes:
    """
    Line C{number} of the bulk input: 100 bytes with its newline.
    """
    return b"%09d " % number + b"." * (LINE - 11) + b"\n"


def peakRss(pid: int) -> int:
    """
    The highest resident memory process C{pid} has had (C{VmHWM}).
    """
    with open(f"/proc/{pid}/status") as f:
        for entry in f:
            if entry.startswith("VmHWM:"):
                return int(entry.split()[1]) * 1024
    raise ValueError(f"process {pid} has no VmHWM")


def readFrames(
    port: int, count: int, check: Callable[[int, bytes], bool], report: Callable[..., None], idle: float = 60
) -> None:
    """
    A plain stdlib subscriber, as a user would write one: read int32 frames
    from C{port} and parse each, until C{count} have come, or L{END}, or
    none for C{idle} seconds; report how many arrived, whether C{check} accepted each
    with its index, and when the last came.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(idle)
    lastAt = time.monotonic()
    buffer = b""
    received = 0
    ordered = True
    try:
        report("connected")
        while received < count:
            data = sock.recv(1 << 16)
            if not data:
                break
            buffer += data
            offset = 0
            while len(buffer) - offset >= 4:
                (length,) = _HEADER.unpack_from(buffer, offset)
                if len(buffer) - offset - 4 < length:
                    break
                payload = buffer[offset + 4 : offset + 4 + length]
                offset += 4 + length
                if payload == END:
                    count = received
                    break
                if ordered and not check(received, payload):
                    ordered = False
                received += 1
            buffer = buffer[offset:]
            lastAt = time.monotonic()
    except OSError:
        pass
    report("done", received, ordered, lastAt)


def _bulkLine(index: int, payload: bytes) -> bool:
    return payload == line(index)[:-1]


class _Reporter:
    """
    The child processes' report channel to this one.
    """

    def __init__(self) -> None:
        self.queue: multiprocessing.Queue[tuple[object, ...]] = multiprocessing.get_context("fork").Queue()
        self._early: list[tuple[object, ...]] = []

    def __call__(self, *values: object) -> None:
        self.queue.put(values)

    def expect(self, tag: str, timeout: float) -> tuple[object, ...]:
        """
        The next report tagged C{tag}; others that come first wait their
        turn.
        """
        for values in self._early:
            if values[0] == tag:
                self._early.remove(values)
                return values[1:]
        deadline = time.monotonic() + timeout
        while True:
            values = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            if values[0] == tag:
                return values[1:]
            self._early.append(values)


@dataclass
class BulkResult(RssGrowth):
    """
    What one C{bulk} run saw.
    """

    lines: int
    readers: int = 1
    seconds: float = 0.0
    clientLines: int = 0
    clientInOrder: bool = False
    readerLines: int = 0
    readerInOrder: bool = False
    rssBefore: int = 0
    rssPeak: int = 0
    nonReaderCut: str = ""
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.lines:,} lines of {LINE} bytes through --source stdin in {self.seconds:.1f} s: "
            + (
                f"streamd.client got {self.clientLines:,} ({'in order' if self.clientInOrder else 'NOT in order'}), "
                if self.clientLines
                else ""
            )
            + f"{self.readers} stdlib reader(s) got {self.readerLines:,} each at least "
            f"({'in order' if self.readerInOrder else 'NOT in order'}); "
            f"daemon RSS {self.rssBefore / 2**20:.1f} MiB before, growth {self.growth / 2**20:.1f} MiB"
            + (f"; non-reader: {self.nonReaderCut or 'NOT cut'}" if self.nonReaderCut is not None else "")
        )


def _printedLines(stream: object, count: int, result: BulkResult) -> None:
    ordered = True
    received = 0
    for raw in stream:  # type: ignore[attr-defined]
        if ordered and raw != line(received):
            ordered = False
        received += 1
        result.clientLines = received
        if received == count:
            break
    result.clientInOrder = ordered and received == count


def bulk(
    lines: int = 2_000_000,
    nonReader: bool = False,
    options: tuple[str, ...] = (),
    readers: int = 1,
    client: bool = True,
) -> BulkResult:
    """
    Feed C{lines} lines flat out into C{twistd -n streamd --source stdin}
    and read them with C{readers} stdlib readers, each in its own process,
    and (if C{client}) C{python -m streamd.client}.
    """
    result = BulkResult(lines, readers, nonReaderCut="" if nonReader else None)  # type: ignore[arg-type]
    workdir = Path(tempfile.mkdtemp(prefix="streamd-bulk-"))
    log = workdir / "streamd.log"
    argv = twistdCommand("-n", "--pidfile=", "streamd", "--listen", "tcp:0:interface=127.0.0.1")
    argv += ["--source", "stdin", "--stats-interval", "0", *options]
    with open(log, "wb") as out:
        daemon = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    processes: list[subprocess.Popen[bytes]] = [daemon]
    reporter = _Reporter()
    try:
        port = _waitListening(log, daemon)
        printed = None
        if client:
            command = [sys.executable, "-m", "streamd.client", "--port", str(port)]
            printer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
            processes.append(printer)
            printed = threading.Thread(
                target=_printedLines, args=(printer.stdout, lines, result), daemon=True
            )
        for _ in range(readers):
            reader = multiprocessing.get_context("fork").Process(
                target=readFrames, args=(port, lines, _bulkLine, reporter), daemon=True
            )
            reader.start()
            reporter.expect("connected", 20)
        silent = None
        if nonReader:
            silent = socket.socket()
            silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            silent.connect(("127.0.0.1", port))
        clients = readers + client + nonReader
        _waitFor(lambda: log.read_bytes().count(b" connected (") >= clients, 20)
        result.rssBefore = rssBytes(daemon.pid)
        if printed is not None:
            printed.start()
        started = time.monotonic()
        assert daemon.stdin is not None
        chunk = 10_000
        for first in range(0, lines, chunk):
            daemon.stdin.write(b"".join(line(n) for n in range(first, min(first + chunk, lines))))
            if first == 0 and printed is not None:
                # A reader that has not read yet is not waited for: flood
                # once the printing client is up and has printed the first
                # chunk, as a user's is (on a loaded machine its process may
                # take a while to get going).
                daemon.stdin.flush()
                _waitFor(lambda: result.clientLines >= min(chunk, lines), 30)
        daemon.stdin.flush()
        ends = []
        result.readerLines, result.readerInOrder = lines, True
        for _ in range(readers):
            readerLines, readerOrdered, readerEnd = reporter.expect("done", 600)
            result.readerLines = min(result.readerLines, int(readerLines))  # type: ignore[call-overload]
            result.readerInOrder = result.readerInOrder and bool(readerOrdered)
            ends.append(float(readerEnd))  # type: ignore[arg-type]
        if printed is not None:
            printed.join(600)
            ends.append(time.monotonic())
        result.seconds = max(ends) - started
        result.rssPeak = peakRss(daemon.pid)
        if silent is not None:
            silent.close()
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(10)
        result.log = log.read_text(errors="replace").splitlines()
    if nonReader:
        cuts = [entry.split("] ", 1)[-1] for entry in result.log if "is too slow" in entry]
        result.nonReaderCut = cuts[0] if cuts else ""
    return result


def _waitFor(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.01)


def _waitListening(log: Path, daemon: subprocess.Popen[bytes]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        for entry in log.read_text(errors="replace").splitlines():
            if "streamd listening on 127.0.0.1:" in entry:
                return int(entry.rsplit(":", 1)[1].split()[0])
        if daemon.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError("the daemon did not start: " + log.read_text(errors="replace")[-2000:])


def _pacedPublisher(
    port: int,
    frame: Callable[[int], bytes],
    rate: float,
    seconds: float,
    redis: bool,
    report: Callable[..., None],
    go: Any = None,
) -> None:
    """
    Publish frames at C{rate} bytes/s for C{seconds}, in 10 ms steps, once
    C{go} (an event) is set, if given.
    """
    sock = socket.create_connection(("127.0.0.1", port))
    if go is not None:
        go.wait()
    sent = 0
    count = 0
    started = time.monotonic()
    while (now := time.monotonic()) - started < seconds:
        due = rate * (now - started)
        batch = []
        while sent < due:
            data = frame(count)
            batch.append(data)
            sent += len(data)
            count += 1
        if batch:
            sock.sendall(b"".join(batch))
        if redis:
            _drainReplies(sock)
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    if not redis:
        sock.sendall(_HEADER.pack(len(END)) + END)
    report("published", count, sent, elapsed)
    sock.close()


def _drainReplies(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while sock.recv(1 << 16):
            pass
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)


def _redisPublish(payload: bytes) -> bytes:
    return b"*3\r\n$7\r\nPUBLISH\r\n$1\r\ns\r\n$%d\r\n%s\r\n" % (len(payload), payload)


@dataclass
class StalledResult(RssGrowth):
    """
    One server's memory growth with N subscribers that never read.
    """

    server: str
    subscribers: int
    published: int = 0
    seconds: float = 0.0
    rssBefore: int = 0
    rssPeak: int = 0

    def summary(self) -> str:
        return (
            f"{self.server}: {self.subscribers} subscribers that never read, {self.published / 2**20:.0f} MiB "
            f"published in {self.seconds:.1f} s: RSS {self.rssBefore / 2**20:.1f} MiB before, "
            f"peak {self.rssPeak / 2**20:.1f} MiB, growth {self.growth / 2**20:.1f} MiB"
        )


def stalled(server: str, subscribers: int, rate: float = 20 * 2**20, seconds: float = 10.0) -> StalledResult:
    """
    C{subscribers} clients that subscribe and never read; one publisher of
    1 KiB messages at C{rate} bytes/s for C{seconds}.
    """
    raiseFileLimit(subscribers + 256)
    workdir = Path(tempfile.mkdtemp(prefix="streamd-stalled-"))
    result = StalledResult(server, subscribers)
    redis = server == "redis"
    daemon: Server = startRedis(workdir, subscribers + 100) if redis else startStreamd(workdir, [])
    socks = []
    reporter = _Reporter()
    try:
        for _ in range(subscribers):
            sock = socket.create_connection(("127.0.0.1", daemon.port))
            if redis:
                sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\ns\r\n")
            socks.append(sock)
        daemon.waitClients(subscribers, 60)
        time.sleep(0.5)
        result.rssBefore = rssBytes(daemon.process.pid)
        payload = b"m" * 1020
        frame = (lambda n: _redisPublish(payload)) if redis else (lambda n: _HEADER.pack(1020) + payload)
        publisher = multiprocessing.get_context("fork").Process(
            target=_pacedPublisher, args=(daemon.port, frame, rate, seconds, redis, reporter), daemon=True
        )
        publisher.start()
        _, sent, elapsed = reporter.expect("published", seconds + 60)
        publisher.join(10)
        result.published, result.seconds = int(sent), float(elapsed)  # type: ignore[call-overload, arg-type]
        result.rssPeak = peakRss(daemon.process.pid)
    finally:
        for sock in socks:
            sock.close()
        daemon.stop()
    return result


@dataclass
class BlockResult:
    """
    What one C{block} run saw.
    """

    published: int = 0
    received: int = 0
    inOrder: bool = False
    publishSeconds: float = 0.0
    receiveSeconds: float = 0.0
    reconnects: int = 0

    @property
    def rateRatio(self) -> float:
        return self.publishSeconds / self.receiveSeconds if self.receiveSeconds else 0.0

    def summary(self) -> str:
        return (
            f"--slow-consumer block, {self.reconnects} never-reading reconnects: published {self.published:,} in "
            f"{self.publishSeconds:.1f} s, healthy subscriber got {self.received:,} "
            f"({'in order' if self.inOrder else 'NOT in order'}) in {self.receiveSeconds:.1f} s: "
            f"{self.rateRatio:.0%} of the publisher's rate"
        )


def _serial(index: int, payload: bytes) -> bool:
    return _SERIAL.unpack_from(payload)[0] == index


def _reconnectForever(port: int, stop: threading.Event, counter: list[int]) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stop.wait(0.05)
            counter[0] += 1
        except OSError:
            stop.wait(0.01)


def block(rate: float = 2**20, seconds: float = 30.0, reconnectors: int = 4) -> BlockResult:
    """
    A healthy subscriber of a block-mode stream at C{rate} bytes/s, while
    C{reconnectors} threads keep connecting clients that never read.
    """
    workdir = Path(tempfile.mkdtemp(prefix="streamd-block-"))
    daemon = startStreamd(workdir, ["--slow-consumer", "block"])
    reporter = _Reporter()
    stop = threading.Event()
    counter = [0]
    result = BlockResult()
    try:
        reader = multiprocessing.get_context("fork").Process(
            target=readFrames, args=(daemon.port, 1 << 62, _serial, reporter), daemon=True
        )
        reader.start()
        reporter.expect("connected", 20)
        daemon.waitClients(1, 20)
        padding = b"." * (1020 - _SERIAL.size)
        go = multiprocessing.get_context("fork").Event()
        # Forked before the threads start: a child forked while threads
        # run can inherit a lock one of them holds, and hang.
        publisher = multiprocessing.get_context("fork").Process(
            target=_pacedPublisher,
            args=(
                daemon.port,
                lambda n: _HEADER.pack(1020) + _SERIAL.pack(n) + padding,
                rate,
                seconds,
                False,
                reporter,
                go,
            ),
            daemon=True,
        )
        publisher.start()
        threads = [
            threading.Thread(target=_reconnectForever, args=(daemon.port, stop, counter), daemon=True)
            for _ in range(reconnectors)
        ]
        for thread in threads:
            thread.start()
        started = time.monotonic()
        go.set()
        published, _, publishSeconds = reporter.expect("published", seconds + 60)
        result.published, result.publishSeconds = int(published), float(publishSeconds)  # type: ignore[call-overload, arg-type]
        stop.set()
        received, ordered, lastAt = reporter.expect("done", 30)
        result.received, result.inOrder = int(received), bool(ordered)  # type: ignore[call-overload]
        result.receiveSeconds = float(lastAt) - started  # type: ignore[arg-type]
        result.reconnects = counter[0]
    finally:
        stop.set()
        daemon.stop()
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.delivery", description=__doc__.split("\n\n")[0]
    )
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    bulkParser = scenarios.add_parser("bulk", help="--source stdin fed flat out, read to the end")
    bulkParser.add_argument("--lines", type=int, default=2_000_000)
    bulkParser.add_argument("--readers", type=int, default=1, help="stdlib readers, each in its own process")
    bulkParser.add_argument("--no-client", action="store_true", help="without python -m streamd.client")
    bulkParser.add_argument("--non-reader", action="store_true", help="add a client that never reads")
    bulkParser.add_argument("--history", type=int, default=None, help="the daemon's --history, in bytes")
    bulkParser.add_argument(
        "--stall-timeout", type=float, default=None, help="the daemon's --stall-timeout, in seconds"
    )
    stalledParser = scenarios.add_parser("stalled", help="N subscribers that never read")
    stalledParser.add_argument("--subscribers", type=int, nargs="+", default=[10, 100, 1000])
    stalledParser.add_argument("--compare", choices=["redis"], default=None)
    stalledParser.add_argument("--seconds", type=float, default=10.0)
    stalledParser.add_argument("--runs", type=int, default=1, help="runs of each; the median growth is shown")
    blockParser = scenarios.add_parser("block", help="block mode with never-reading clients reconnecting")
    blockParser.add_argument("--seconds", type=float, default=30.0)
    arguments = parser.parse_args(argv)
    if arguments.scenario == "bulk":
        options: tuple[str, ...] = ()
        if arguments.history is not None:
            options += ("--history", str(arguments.history))
        if arguments.stall_timeout is not None:
            options += ("--stall-timeout", str(arguments.stall_timeout))
        result = bulk(arguments.lines, arguments.non_reader, options, arguments.readers, not arguments.no_client)
        print(result.summary())
        return logFailures(result.log)
    elif arguments.scenario == "stalled":
        for n in arguments.subscribers:
            servers = ["streamd"]
            if arguments.compare == "redis":
                if n * 32 * MiB > 16 * 1024 * MiB:
                    print(
                        f"redis: {n} subscribers not run: up to 32 MiB of output buffer each (its pubsub hard"
                        f" limit) would need {n * 32 / 1024:.0f} GiB, more than this machine has"
                    )
                else:
                    servers.append("redis")
            for _ in range(arguments.runs):
                for server in servers:
                    print(stalled(server, n, seconds=arguments.seconds).summary(), flush=True)
    else:
        print(block(seconds=arguments.seconds).summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
