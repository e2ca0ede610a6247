"""
nats-py's asyncio event loop, in a thread of its own beside the reactor.

Whichever reactor twistd runs, the link hands work across in batches: one
call per burst of messages each way, not one per message.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any


class LoopThread:
    """
    An asyncio loop running in a daemon thread until L{stop}.
    """

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
