"""
Tests for the seq protocol's stdlib reference client (C{docs/seq_client.py})
against a real daemon on a loopback port.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from streamd.config import DaemonConfig, Listen
from streamd.seqframing import SEQ

from ..support import startDaemon

CLIENT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "seq_client.py")


def referenceClient() -> Any:
    """
    The reference client, loaded as a module.
    """
    spec = importlib.util.spec_from_file_location("seq_client", CLIENT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Enough(Exception):
    """
    The test has the messages it wanted from one connection.
    """


def collecting(into: list[tuple[int, bytes]], count: int) -> Callable[[int, bytes], None]:
    """
    An C{out} for the reference client that keeps C{count} messages, then
    ends the connection.
    """
    stop = len(into) + count

    def out(seq: int, payload: bytes) -> None:
        into.append((seq, payload))
        if len(into) >= stop:
            raise Enough()

    return out


class ReferenceClientTests(TestCase):
    """
    The reference client speaks the protocol the daemon does.
    """

    def test_shortEnough(self) -> None:
        """
        The reference client is under 60 lines.
        """
        with open(CLIENT) as f:
            self.assertLess(len(f.readlines()), 60)

    @inlineCallbacks
    def test_resumesAcrossConnections(self) -> Any:
        """
        Over three connections, while the daemon publishes all along, the
        client gets every message once and in order, each with its number.
        """
        service, port = startDaemon(
            self, DaemonConfig(listens=(Listen("tcp:0:interface=127.0.0.1", SEQ),), sources=())
        )
        history = service.hub.history
        publisher = LoopingCall(lambda: service.hub.publish([b"m%d" % history.nextSequence]))
        publisher.start(0.002)
        self.addCleanup(publisher.stop)
        client = referenceClient()
        state: dict[str, Any] = {"epoch": None, "last": 0}
        got: list[tuple[int, bytes]] = []
        for _ in range(3):
            yield self.assertFailure(
                deferToThread(client.session, "127.0.0.1", port, state, collecting(got, 50)), Enough
            )
        first = got[0][0]
        self.assertEqual(got, [(seq, b"m%d" % seq) for seq in range(first, first + 150)])
        self.assertEqual(state["epoch"], history.epoch)
