"""
Where nats-py's asyncio code runs: on the reactor's own loop when streamd
installed Twisted's asyncio reactor (L{installAsyncioReactor}, as C{twistd
streamd --cluster} does), otherwise on a loop in a thread of its own beside
the reactor.

Either way the link hands work across in batches: one call per burst of
messages each way, not one per message.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Protocol


class NatsLoop(Protocol):
    """
    An asyncio loop for nats-py, and the calls between it and the reactor.

    @ivar where: where the loop runs, for the log.
    """

    where: str

    def start(self) -> None: ...

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """
        Run C{coroutine} on the loop; return something to C{cancel()} it.
        """

    def callInLoop(self, f: Callable[..., object], *args: object) -> None:
        """
        Call C{f} soon on the loop (from the reactor).
        """

    def callInReactor(self, f: Callable[..., object], *args: object) -> None:
        """
        Call C{f} soon in the reactor (from the loop).
        """

    def stop(self) -> None:
        """
        Stop what L{start} started.
        """


_shared: tuple[Any, asyncio.AbstractEventLoop] | None = None


def installAsyncioReactor() -> None:
    """
    Install Twisted's asyncio reactor on a loop made here, which
    L{loopFor} then shares with nats-py.
    """
    global _shared
    from twisted.internet import asyncioreactor

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    asyncioreactor.install(eventloop=loop)
    from twisted.internet import reactor

    _shared = (reactor, loop)


def loopFor(reactor: Any, name: str) -> NatsLoop:
    """
    The reactor's own asyncio loop if L{installAsyncioReactor} installed
    it, else a loop in a thread called C{name}.
    """
    if _shared is not None and _shared[0] is reactor:
        return SharedLoop(_shared[1])
    return LoopThread(reactor, name)


class SharedLoop:
    """
    The asyncio reactor's own loop: nothing crosses a thread.
    """

    where = "on the reactor's asyncio loop"

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def start(self) -> None:
        pass

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.ensure_future(coroutine, loop=self.loop)

    def callInLoop(self, f: Callable[..., object], *args: object) -> None:
        """
        Call C{f} now: the reactor is on the loop's thread, and what it asks
        of the loop (wake the sender) takes no time, so it need not wait
        for the next turn of the loop.
        """
        f(*args)

    def callInReactor(self, f: Callable[..., object], *args: object) -> None:
        """
        Call C{f} on the next turn of the loop, after what nats-py delivers
        now: messages of one read are then published here together.
        """
        self.loop.call_soon(f, *args)

    def stop(self) -> None:
        pass


class LoopThread:
    """
    An asyncio loop running in a daemon thread until L{stop}.
    """

    where = "on an asyncio loop in a thread beside the reactor"

    def __init__(self, reactor: Any, name: str) -> None:
        self.reactor = reactor
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        self.loop.close()

    def start(self) -> None:
        self._thread.start()

    def submit(self, coroutine: Coroutine[Any, Any, Any]) -> Future[Any]:
        """
        Run C{coroutine} on the loop (from the reactor's thread).
        """
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    def callInLoop(self, f: Callable[..., object], *args: object) -> None:
        """
        Call C{f} in the loop's thread (from the reactor's thread).
        """
        self.loop.call_soon_threadsafe(f, *args)

    def callInReactor(self, f: Callable[..., object], *args: object) -> None:
        """
        Call C{f} in the reactor's thread (from the loop's thread).
        """
        self.reactor.callFromThread(f, *args)

    def stop(self) -> None:
        """
        Stop the loop once what it runs now returns, and wait for its thread.
        """
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
