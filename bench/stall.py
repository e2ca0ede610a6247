"""
The stalled-client scenario: one client that never reads, one healthy client,
a publisher flat out and garbage from other connections, against a real
daemon process.  Measures the daemon's memory growth and how long the stalled
client took to be cut.

Run it with C{python -m bench.stall [MEGABYTES]} (default 200).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from bench.proc import RssGrowth
from bench.servers import logFailures, twistdCommand

MAGIC = b"SEQ!"
_HEADER = struct.Struct(">I")
_SEQUENCE = struct.Struct(">Q")


@dataclass
class StallResult(RssGrowth):
    """
    What one run of the scenario saw.
    """

    published: int = 0
    received: int = 0
    inOrder: bool = True
    stalledCutAfter: float | None = None
    cutLine: str = ""
    rssBefore: int = 0
    rssPeak: int = 0
    seconds: float = 0.0
    garbageConnections: int = 0
    readerError: str = ""
    log: list[str] = field(default_factory=list)

    def summary(self) -> str:
        cut = (
            "never"
            if self.stalledCutAfter is None
            else f"{self.stalledCutAfter:.2f} s after publishing began"
        )
        return (
            f"published {self.published} messages in {self.seconds:.2f} s; healthy client received "
            f"{self.received}, {'in order' if self.inOrder else 'OUT OF ORDER'}\n"
            f"stalled client cut: {cut}: {self.cutLine}\n"
            f"daemon RSS: {self.rssBefore / 2**20:.1f} MiB before, peak {self.rssPeak / 2**20:.1f} MiB, "
            f"growth {self.growth / 2**20:.1f} MiB\n"
            f"garbage connections during the run: {self.garbageConnections}"
            + (f"\nhealthy client's error: {self.readerError}" if self.readerError else "")
        )


def _memory(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


class _Daemon:
    """
    A C{twistd -n streamd} process on a free loopback port.
    """

    def __init__(self, *options: str) -> None:
        command = twistdCommand(
            "-n",
            "--pidfile=",
            "streamd",
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--source",
            "none",
            "--stats-interval",
            "0",
            *options,
        )
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.lines: list[tuple[float, str]] = []
        self.port = self._waitForPort()
        threading.Thread(target=self._drain, daemon=True).start()

    def _waitForPort(self) -> int:
        assert self.process.stdout is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = self.process.stdout.readline().decode(errors="replace")
            if not line:
                break
            self.lines.append((time.monotonic(), line.rstrip()))
            found = re.search(r"streamd listening on 127\.0\.0\.1:(\d+)", line)
            if found:
                return int(found.group(1))
        self.stop()
        raise RuntimeError("the daemon did not start:\n" + "\n".join(text for _, text in self.lines))

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def waitFor(self, words: str, seconds: float = 10) -> tuple[float, str] | None:
        """
        The first log line (and when it came) holding C{words}, waiting up
        to C{seconds} for it; C{None} if none came.
        """
        deadline = time.monotonic() + seconds
        while True:
            for when, line in list(self.lines):
                if words in line:
                    return when, line
            if time.monotonic() > deadline:
                return None
            time.sleep(0.01)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _connect(port: int, receiveBuffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receiveBuffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
    sock.connect(("127.0.0.1", port))
    return sock


def _stream(count: int, payloadSize: int) -> bytes:
    """
    The publisher's whole byte stream: C{count} frames, each carrying its
    sequence number, so that a reader can check order by comparing bytes.
    """
    padding = b"." * (payloadSize - len(MAGIC) - _SEQUENCE.size)
    header = _HEADER.pack(payloadSize) + MAGIC
    return b"".join([header + _SEQUENCE.pack(n) + padding for n in range(count)])


def _readStream(
    sock: socket.socket, expected: bytes, frameSize: int, result: StallResult, deadline: float
) -> None:
    """
    Read until the whole expected stream has come, comparing as it arrives:
    every message, in order, and nothing else.  Comparing bytes costs next to
    nothing, so this reader is never the bottleneck.
    """
    view = memoryview(expected)
    buffer = bytearray(1 << 20)
    received = 0
    sock.settimeout(1.0)
    while received < len(expected) and time.monotonic() < deadline:
        try:
            size = sock.recv_into(buffer)
        except TimeoutError:
            continue
        except OSError as e:
            result.readerError = str(e)
            break
        if not size:
            break
        if buffer[:size] != view[received : received + size]:
            result.inOrder = False
            break
        received += size
    result.received = received // frameSize


def _garbage(port: int, stop: threading.Event, result: StallResult) -> None:
    """
    Keep opening connections that misbehave: oversized headers with random
    bytes, frames cut off by a disconnect, connect-and-vanish.
    """
    kinds = [
        lambda: b"\xff" + os.urandom(999),
        lambda: _HEADER.pack(1000) + b"cut off",
        lambda: b"",
    ]
    while not stop.is_set():
        for make in kinds:
            try:
                with _connect(port) as sock:
                    sock.sendall(make())
                result.garbageConnections += 1
            except OSError:
                pass
        stop.wait(0.05)


def _publish(port: int, stream: bytes) -> None:
    """
    Send C{stream} as fast as the socket takes it.
    """
    with _connect(port) as publisher:
        publisher.sendall(stream)


def run(totalBytes: int = 200 * 2**20, payloadSize: int = 1024, *options: str) -> StallResult:
    """
    Run the scenario once with the daemon's default limits (plus C{options}).
    """
    result = StallResult()
    daemon = _Daemon(*options)
    stop = threading.Event()
    sockets: list[socket.socket] = []
    try:
        stalled = _connect(daemon.port, receiveBuffer=4096)
        healthy = _connect(daemon.port)
        sockets += [stalled, healthy]
        # Both must be subscribed before publishing begins, or the stalled one
        # starts at the head and is never behind.
        daemon.waitFor("(2 connected)")
        result.rssBefore = _memory(daemon.process.pid, "VmRSS")
        count = totalBytes // (payloadSize + 4)
        result.published = count
        stream = _stream(count, payloadSize)
        garbage = threading.Thread(target=_garbage, args=(daemon.port, stop, result), daemon=True)
        garbage.start()
        # The publisher gets a process of its own, so that it cannot starve
        # the healthy reader of this one.
        publisher = multiprocessing.get_context("fork").Process(
            target=_publish, args=(daemon.port, stream), daemon=True
        )
        started = time.monotonic()
        publisher.start()
        _readStream(healthy, stream, payloadSize + 4, result, started + 120)
        publisher.join(10)
        if publisher.is_alive():
            publisher.kill()
        result.seconds = time.monotonic() - started
        result.rssPeak = _memory(daemon.process.pid, "VmHWM")
        # The daemon's log reaches us through a pipe, after the fact.
        cut = daemon.waitFor("is too slow")
        if cut is not None:
            result.stalledCutAfter = cut[0] - started
            result.cutLine = cut[1].split("] ", 1)[-1]
    finally:
        stop.set()
        for sock in sockets:
            sock.close()
        daemon.stop()
        result.log = [line for _, line in daemon.lines]
    return result


def _megabytes(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of megabytes, at least 1, not {value!r}")
    return int(value)


def parseArguments(argv: list[str]) -> argparse.Namespace:
    """
    The command line of C{python -m bench.stall}; a mistake exits 2
    with one line of usage and one of error.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bench.stall",
        description="Publish MEGABYTES flat out past a client that never reads and a healthy one, "
        "and print the daemon's memory growth and how long the stalled client took to be cut.",
    )
    parser.add_argument(
        "megabytes", nargs="?", type=_megabytes, default=200, help="how much to publish (default 200)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """
    The scenario; returns the exit status: 1 if the daemon logged an error.
    """
    megabytes = parseArguments(sys.argv[1:] if argv is None else argv).megabytes
    print(f"stalled-client scenario: {megabytes} MB published flat out, default limits")
    result = run(megabytes * 2**20)
    print(result.summary())
    return logFailures(result.log)


if __name__ == "__main__":
    sys.exit(main())
