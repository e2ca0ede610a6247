"""
Tests for L{streamd.client.failover}: the nodes of a cluster, tried in turn,
and the client's repeatable C{--connect}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from streamd.client.__main__ import ClientOptions
from streamd.client.failover import InTurn, inTurn


@implementer(IStreamClientEndpoint)
class _Endpoint:
    """
    An endpoint that is up (connects at once) or down (refused).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.up = True
        self.tries = 0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[Any]:
        self.tries += 1
        if self.up:
            return succeed(self.name)
        return fail(ConnectionRefusedError(self.name))


class InTurnTests(SynchronousTestCase):
    """
    L{InTurn} keeps to the endpoint that works and moves on when it fails.
    """

    def setUp(self) -> None:
        self.a, self.b, self.c = _Endpoint("a"), _Endpoint("b"), _Endpoint("c")
        self.endpoint = InTurn([self.a, self.b, self.c], ["a", "b", "c"])

    def connect(self) -> Any:
        return self.successResultOf(self.endpoint.connect(None))  # type: ignore[arg-type]

    def test_firstThatWorks(self) -> None:
        """
        The first endpoint while it works; the next ones once it does not;
        then the one that worked, without trying the dead one again first.
        """
        self.assertEqual(self.connect(), "a")
        self.a.up = False
        self.assertEqual(self.connect(), "b")
        self.assertEqual(self.connect(), "b")
        self.assertEqual((self.a.tries, self.b.tries), (2, 2))

    def test_allDown(self) -> None:
        """
        When every endpoint fails once, the attempt fails with the last
        error; the next attempt starts again from the first.
        """
        for endpoint in (self.a, self.b, self.c):
            endpoint.up = False
        failure = self.failureResultOf(self.endpoint.connect(None), ConnectionRefusedError)  # type: ignore[arg-type]
        self.assertIn(": c", str(failure.value))
        self.assertEqual([e.tries for e in (self.a, self.b, self.c)], [1, 1, 1])
        self.b.up = True
        self.assertEqual(self.connect(), "b")
        self.assertEqual([e.tries for e in (self.a, self.b, self.c)], [2, 2, 1])

    def test_oneIsItself(self) -> None:
        """
        A single endpoint is used as it is.
        """
        self.assertIs(inTurn([self.a], ["a"]), self.a)


class ConnectOptionTests(SynchronousTestCase):
    """
    C{--connect} is repeatable.
    """

    def test_several(self) -> None:
        """
        Several C{--connect} make one endpoint that tries them in turn, and
        messages name them all.
        """
        options = ClientOptions()
        options.parseOptions(["--connect", "tcp:host=h1:port=1", "--connect", "tcp:host=h2:port=2"])
        self.assertEqual(options.where(), "tcp:host=h1:port=1 or tcp:host=h2:port=2")
        endpoint = options.endpoint(Clock())
        self.assertIsInstance(endpoint, InTurn)
