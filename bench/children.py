"""
The benchmark's load-generating processes: started together, told when to
stop through shared memory, and killed whatever happens.
"""

from __future__ import annotations

import multiprocessing
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import RawArray
from types import TracebackType
from typing import Any

from bench.proc import dieWithParent
from bench.servers import BenchError

JOIN_SECONDS = 2.0
NEVER = 2**62

Report = Callable[[str, object], None]


class Shared:
    """
    Memory that the benchmark and its children share without locks: each
    slot has a single writer.

    @ivar counts: messages received so far, per subscriber connection.
    @ivar received: bytes received so far, per subscriber connection (what
        the wire carried, headers and compression included).
    @ivar control: L{STOP} (set to stop every child), L{WINDOW_START} and
        L{WINDOW_END} (the publish times, in C{monotonic_ns}, whose latencies
        count), L{PUBLISHED} (messages the publisher has sent) and L{GO} (set
        to have the idle connections connect, all at once).
    """

    STOP, WINDOW_START, WINDOW_END, PUBLISHED, GO = range(5)

    def __init__(self, subscribers: int) -> None:
        self.counts = RawArray("q", max(subscribers, 1))
        self.received = RawArray("q", max(subscribers, 1))
        self.control = RawArray("q", [0, NEVER, NEVER, 0, 0])

    @property
    def stopping(self) -> bool:
        """
        Whether the children were told to stop.
        """
        return bool(self.control[self.STOP])


class Child:
    """
    One child process, and the pipe on which it reports.
    """

    def __init__(self, name: str, process: multiprocessing.process.BaseProcess, pipe: Connection) -> None:
        self.name = name
        self.process = process
        self.pipe = pipe

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def expect(self, tag: str, timeout: float) -> Any:
        """
        Wait for the child's next report, which must be C{tag}.

        @return: the value reported.
        @raise BenchError: if the child failed, died or was too slow.
        """
        if not self.pipe.poll(timeout):
            raise BenchError(f"{self.name} did not report {tag!r} within {timeout:g} s")
        try:
            got, value = self.pipe.recv()
        except EOFError:
            raise BenchError(f"{self.name} died (exit status {self.process.exitcode})")
        if got == "error":
            raise BenchError(f"{self.name}: {value}")
        if got != tag:
            raise BenchError(f"{self.name} reported {got!r} instead of {tag!r}")
        return value


class Children:
    """
    The child processes of one run; leaving the C{with} block stops them all,
    politely through L{Shared.control}, then with signals.
    """

    def __init__(self, shared: Shared) -> None:
        self.shared = shared
        self.children: list[Child] = []
        self._context = multiprocessing.get_context("fork")

    def start(self, name: str, body: Callable[..., object], *args: object) -> Child:
        """
        Run C{body(report, *args)} in a new process; what it returns is
        reported as C{"done"}, and an exception as C{"error"}.
        """
        mine, theirs = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_run, args=(theirs, body, args), name=name, daemon=True)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        theirs.close()
        child = Child(name, process, mine)
        self.children.append(child)
        return child

    def checkRunning(self) -> None:
        """
        @raise BenchError: with its error, if a child has ended.
        """
        for child in self.children:
            if child.process.is_alive():
                continue
            try:
                while child.pipe.poll(0):
                    tag, value = child.pipe.recv()
                    if tag == "error":
                        raise BenchError(f"{child.name}: {value}")
            except EOFError:
                pass
            raise BenchError(f"{child.name} ended early (exit status {child.process.exitcode})")

    def stop(self) -> None:
        """
        Tell every child to finish.
        """
        self.shared.control[Shared.STOP] = 1

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        deadline = time.monotonic() + JOIN_SECONDS
        for child in self.children:
            child.process.join(max(deadline - time.monotonic(), 0))
        for child in self.children:
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            child.pipe.close()


def _run(pipe: Connection, body: Callable[..., object], args: tuple[object, ...]) -> None:
    dieWithParent()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    def report(tag: str, value: object) -> None:
        pipe.send((tag, value))

    try:
        report("done", body(report, *args))
    except Exception as e:
        report("error", str(e) or type(e).__name__)
    finally:
        pipe.close()
