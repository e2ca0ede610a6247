"""
The SSE subscribers of C{-p sse-c}: C{bench/ssecount.c}, compiled with gcc
when the bench runs, counts each connection's events at C speed, so that the
subscribers are not what limits a burst run (the Python ones of C{-p sse}
used both cores while the server had a third of one).

A subscriber process of the bench starts one C{ssecount} for its
connections and copies their counts, which it reads from a shared file,
into the bench's counters every few milliseconds.  It counts and does not
time: C{sse-c} runs burst only.
"""

from __future__ import annotations

import functools
import mmap
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.children import Report, Shared
from bench.servers import BenchError

SOURCE = Path(__file__).with_name("ssecount.c")

COPY_SECONDS = 0.005
"""
How often the counts are copied to the bench's counters: its samples, 3 s
apart, are off by at most this much of the subscribers' messages.
"""


@functools.cache
def ssecount() -> str:
    """
    The path of C{ssecount}, compiled from L{SOURCE} once per bench.

    @raise BenchError: if gcc is missing or the compilation fails.
    """
    gcc = shutil.which("gcc")
    if gcc is None:
        raise BenchError("-p sse-c compiles bench/ssecount.c with gcc, which is not on PATH (apt-get install gcc)")
    program = Path(tempfile.mkdtemp(prefix="bench-ssecount-")) / "ssecount"
    compiled = subprocess.run([gcc, "-O2", "-o", str(program), str(SOURCE)], capture_output=True, text=True)
    if compiled.returncode:
        raise BenchError(f"gcc could not compile {SOURCE}: {compiled.stderr.strip()}")
    return str(program)


def countingSubscriber(
    report: Report, program: str, port: int, slots: Sequence[int], shared: Shared, deadline: float
) -> bytes:
    """
    Hold one SSE connection per slot of L{Shared.counts} through
    C{program}, and keep the counts of what each received there.

    @return: no latencies (an empty C{array("q")}'s bytes), as
        L{bench.load.subscriber} returns them.
    """
    with tempfile.TemporaryDirectory(prefix="bench-ssecount-") as directory:
        path = Path(directory) / "counts"
        path.write_bytes(bytes(8 * len(slots)))
        process = subprocess.Popen(
            [program, str(port), str(path), str(len(slots))],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        try:
            if process.stdout.readline() != b"ready\n":
                process.wait()
                raise ConnectionError(process.stderr.read().decode().strip() or "ssecount stopped")
            report("ready", None)
            with path.open("r+b") as file, mmap.mmap(file.fileno(), 0) as memory:
                counts = memoryview(memory).cast("q")
                try:
                    while not shared.stopping and time.monotonic() < deadline:
                        if process.poll() is not None:
                            raise ConnectionError(process.stderr.read().decode().strip())
                        for index, slot in enumerate(slots):
                            shared.counts[slot] = counts[index]
                        time.sleep(COPY_SECONDS)
                finally:
                    counts.release()
        finally:
            process.stdin.close()
            process.wait(5)
    return b""
