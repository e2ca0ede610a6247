"""
Figures of C{--data-dir} against the memory-only daemon, in one run:
C{python bench/durable.py [--rounds N] [--only burst,acknowledged,restart]}.
Its own script, apart from C{python -m bench} (which measures burst and
paced with K subscriber processes: C{--streamd-option=--data-dir={run}}):

  - burst: one int32 publisher writes COUNT messages of 64 B and 1 KiB, ten
    per write, as fast as it can; one subscriber counts them; messages/s
    from the first to the last received (publisher and subscriber share
    one process: a bound on the daemon, not a measure of it);
  - acknowledged: C{python -m streamd.client --framing seq --resume
    --stdin} publishing LINES lines (pipelined), lines/s until it exits 0;
  - restart: a 1 GiB log written with the daemon's own log code, then the
    seconds from starting twistd until it listens (the daemon's share),
    and until a client (a new process) is served the newest message; the
    daemon's RSS then.

Each round runs the memory-only and the C{--data-dir} daemon in turns (the
first going first in odd rounds); every round is printed, then the medians
and spreads.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from twisted.internet.defer import maybeDeferred

from streamd.durable.datadir import DataDir
from streamd.durable.log import StreamLog
from streamd.durable.syncer import FsyncPolicy, Syncer

COUNT = 200_000
LINES = 100_000


def freePort() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


def daemon(port: int, seqPort: int, *argv: str, log: str = os.devnull) -> subprocess.Popen[bytes]:
    """
    A twistd streamd on C{port} (int32) and C{seqPort} (seq), logging to
    C{log}, once it listens.
    """
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
               "streamd", "--port", str(port), "--listen", f"tcp:{seqPort}:interface=127.0.0.1:framing=seq",
               "--source", "none", "--history", str(1 << 30), *argv]  # fmt: skip
    with open(log, "ab") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", seqPort), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.005)
    raise SystemExit("the daemon did not listen")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    process.wait()


def burst(port: int, size: int) -> float:
    """
    Messages/s one subscriber receives of COUNT messages of C{size}
    bytes, published ten per write.
    """
    reader = socket.create_connection(("127.0.0.1", port))
    writer = socket.create_connection(("127.0.0.1", port))
    time.sleep(0.5)
    frame = struct.pack(">I", size) + b"x" * size
    ten = frame * 10
    expected = COUNT * len(frame)
    got = 0
    start = None
    writer.setblocking(False)
    reader.setblocking(False)
    pending = memoryview(ten * 100)
    sent = 0
    while got < expected:
        if sent < COUNT:
            try:
                n = writer.send(pending)
            except BlockingIOError:
                n = 0
            if n == len(pending):
                sent += 1000
                pending = memoryview(ten * 100)
            else:
                pending = pending[n:]
        try:
            data = reader.recv(1 << 20)
            if start is None:
                start = time.monotonic()
            got += len(data)
        except BlockingIOError:
            pass
    assert start is not None
    elapsed = time.monotonic() - start
    reader.close()
    writer.close()
    return COUNT / elapsed


def acknowledged(seqPort: int) -> float:
    lines = b"".join(b"%d\n" % n for n in range(LINES))
    start = time.monotonic()
    subprocess.run([sys.executable, "-m", "streamd.client", "--framing", "seq", "--port", str(seqPort),
                    "--resume", "--stdin", "--count", "0"], input=lines, check=True)  # fmt: skip
    return LINES / (time.monotonic() - start)


def writeLog(directory: str, size: int) -> None:
    """
    A log of C{size} bytes of 1 KiB messages, 64 to an entry, in
    C{directory} (a data directory), written with the daemon's own code.
    """
    syncer = Syncer(None, FsyncPolicy.NO, lambda work, *args: maybeDeferred(work, *args))
    log = StreamLog(os.path.join(directory, "streams", "default"), "default", 64 << 20, syncer)
    body = struct.pack(">I", 1020) + b"y" * 1020
    data = body * 64
    first = 1
    for _ in range(size // len(data)):
        log.write(first - 1, first, 64, data, 0, int(time.time() * 1000), bytes(8), 0)
        first += 64
    log.close()


def restart(directory: str, log: str) -> tuple[float, float, int]:
    """
    Seconds from starting twistd on the log in C{directory} until it
    listens, and until a client is served its newest message; the RSS
    (KiB) then.
    """
    port, seqPort = freePort(), freePort()
    start = time.monotonic()
    process = daemon(port, seqPort, "--data-dir", directory, log=log)
    listening = time.monotonic() - start
    try:
        subprocess.run([sys.executable, "-m", "streamd.client", "--framing", "seq", "--port", str(seqPort),
                        "--last", "1", "--count", "1"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        served = time.monotonic() - start
        with open(f"/proc/{process.pid}/status") as f:
            rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    finally:
        stop(process)
    return listening, served, rss


def opening(directory: str) -> float:
    """
    Seconds the daemon's code takes, in this process, to open the data
    directory C{directory} and its stream C{default} (recovery, mapping,
    the publishers' window), as the daemon does at start.
    """
    start = time.perf_counter()
    dataDir = DataDir(None, directory, "everysec", lambda work, *args: maybeDeferred(work, *args))
    history = dataDir.history("default", 1 << 30, None)
    elapsed = time.perf_counter() - start
    history.close()
    dataDir.unlock()
    return elapsed


def empty(log: str) -> float:
    """
    Seconds from starting twistd with no data directory until it listens.
    """
    port, seqPort = freePort(), freePort()
    start = time.monotonic()
    process = daemon(port, seqPort, log=log)
    listening = time.monotonic() - start
    stop(process)
    return listening


def summary(label: str, values: list[float], unit: str, digits: int = 0) -> str:
    """
    C{values} in order, their median and spread (largest over smallest,
    less one).
    """
    shown = " ".join(f"{v:,.{digits}f}" for v in values)
    median = statistics.median(values)
    spread = max(values) / min(values) - 1 if min(values) > 0 else float("nan")
    return f"{label}: {shown} {unit}; median {median:,.{digits}f}, spread {spread:.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--only", default="burst,acknowledged,restart", help="comma-separated: burst, acknowledged, restart"
    )
    parser.add_argument("--fsync", default="everysec", help="the --fsync of the data-dir daemon")
    parser.add_argument("--log-bytes", type=int, default=1 << 30, help="the size of the restart's log")
    options = parser.parse_args()
    only = set(options.only.split(","))
    directory = tempfile.mkdtemp(prefix="streamd-bench-")
    log = os.path.join(directory, "twistd.log")
    figures: dict[str, list[float]] = {}
    variants: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("memory", ()),
        (f"data-dir {options.fsync}", ("--fsync", options.fsync)),
    )
    try:
        for number in range(1, options.rounds + 1):
            if only & {"burst", "acknowledged"}:
                for label, argv in variants if number % 2 else variants[::-1]:
                    if argv:
                        argv = ("--data-dir", os.path.join(directory, f"d{number}"), *argv)
                    port, seqPort = freePort(), freePort()
                    process = daemon(port, seqPort, *argv, log=log)
                    try:
                        if "burst" in only:
                            for size in (64, 1024):
                                rate = burst(port, size)
                                figures.setdefault(f"burst K=1 {size} B, {label}", []).append(rate)
                                print(f"round {number}: burst {size} B, {label}: {rate:,.0f} msg/s", flush=True)
                        if "acknowledged" in only:
                            rate = acknowledged(seqPort)
                            figures.setdefault(f"acknowledged, {label}", []).append(rate)
                            print(f"round {number}: acknowledged, {label}: {rate:,.0f} msg/s", flush=True)
                    finally:
                        stop(process)
                    shutil.rmtree(os.path.join(directory, f"d{number}"), ignore_errors=True)
            if "restart" in only:
                stored = os.path.join(directory, "restart")
                logSize = f"{options.log_bytes / (1 << 30):g} GiB"
                if number == 1:
                    writeLog(stored, options.log_bytes)
                bare = empty(log)
                opened = opening(stored)
                listening, served, rss = restart(stored, log)
                figures.setdefault("no data dir: start to listening, s", []).append(bare)
                figures.setdefault(f"{logSize} log: start to listening, s", []).append(listening)
                figures.setdefault(f"{logSize} log: start to a client served, s", []).append(served)
                figures.setdefault(f"{logSize} log: RSS then, MiB", []).append(rss / 1024)
                figures.setdefault(f"{logSize} log: opening it in process, s", []).append(opened)
                print(
                    f"round {number}: restart: listening after {listening:.3f} s (no data dir: {bare:.3f} s),"
                    f" a client served after {served:.3f} s, RSS {rss / 1024:.0f} MiB;"
                    f" the daemon's code opens it in {opened * 1000:.1f} ms",
                    flush=True,
                )
        print()
        for label, values in figures.items():
            if label.endswith(", s"):
                print(summary(label[:-3], values, "s", 3))
            elif label.endswith("MiB"):
                print(summary(label[:-5], values, "MiB"))
            else:
                print(summary(label, values, "msg/s"))
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
