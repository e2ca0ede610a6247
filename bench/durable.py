"""
Figures of C{--data-dir} against the memory-only daemon, in one run:
C{python bench/durable.py}.  Its own script, apart from C{python -m bench}:

  - burst: one int32 publisher writes COUNT messages of 64 B and 1 KiB, ten
    per write, as fast as it can; one subscriber counts them; messages/s
    from the first to the last received;
  - acknowledged: C{python -m streamd.client --framing seq --resume
    --stdin} publishing LINES lines (pipelined), lines/s until it exits 0;
  - restart: a 1 GiB log written with the daemon's own log code, then the
    seconds from starting twistd to a client served the newest message,
    and the daemon's RSS then.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time

from twisted.internet.defer import maybeDeferred

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


def daemon(port: int, seqPort: int, *argv: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n", "--pidfile=",
               "streamd", "--port", str(port), "--listen", f"tcp:{seqPort}:interface=127.0.0.1:framing=seq",
               "--source", "none", "--history", str(1 << 30), *argv]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", seqPort), timeout=1).close()
            return process
        except OSError:
            time.sleep(0.01)
    raise SystemExit("the daemon did not listen")


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


def restart(directory: str) -> tuple[float, int]:
    """
    Seconds from start to a client served the newest message of a 1 GiB
    log, and the RSS (KiB) then.
    """
    syncer = Syncer(None, FsyncPolicy.NO, lambda work, *args: maybeDeferred(work, *args))
    log = StreamLog(os.path.join(directory, "streams", "default"), "default", 64 << 20, syncer)
    body = struct.pack(">I", 1020) + b"y" * 1020
    data = body * 64
    first = 1
    for _ in range((1 << 30) // len(data)):
        log.write(first - 1, first, 64, data, 0, int(time.time() * 1000), bytes(8), 0)
        first += 64
    log.close()
    port, seqPort = freePort(), freePort()
    start = time.monotonic()
    process = daemon(port, seqPort, "--data-dir", directory)
    subprocess.run([sys.executable, "-m", "streamd.client", "--framing", "seq", "--port", str(seqPort),
                    "--last", "1", "--count", "1"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    served = time.monotonic() - start
    with open(f"/proc/{process.pid}/status") as f:
        rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))
    process.terminate()
    process.wait()
    return served, rss


def main() -> None:
    directory = tempfile.mkdtemp(prefix="streamd-bench-")
    try:
        if sys.argv[1:] == ["restart"]:
            served, rss = restart(os.path.join(directory, "c"))
            print(f"restart with a 1 GiB log: first client served after {served:.2f} s, RSS {rss / 1024:.0f} MiB")
            return
        for label, argv in (("memory", ()), ("data-dir everysec", ("--data-dir", os.path.join(directory, "a")))):
            port, seqPort = freePort(), freePort()
            process = daemon(port, seqPort, *argv)
            try:
                for size in (64, 1024):
                    print(f"burst K=10 {size} B, {label}: {burst(port, size):,.0f} msg/s")
                print(f"acknowledged, one pipelined publisher, {label}: {acknowledged(seqPort):,.0f} msg/s")
            finally:
                process.terminate()
                process.wait()
        port, seqPort = freePort(), freePort()
        process = daemon(port, seqPort, "--data-dir", os.path.join(directory, "b"), "--fsync", "always")
        try:
            print(f"acknowledged, one pipelined publisher, data-dir always: {acknowledged(seqPort):,.0f} msg/s")
        finally:
            process.terminate()
            process.wait()
        served, rss = restart(os.path.join(directory, "c"))
        print(f"restart with a 1 GiB log: first client served after {served:.2f} s, RSS {rss / 1024:.0f} MiB")
    finally:
        shutil.rmtree(directory)


if __name__ == "__main__":
    main()
