"""
Several endpoints of one stream (the nodes of a cluster), tried in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from zope.interface import implementer


@implementer(IStreamClientEndpoint)
class InTurn:
    """
    Connects to the endpoint that worked last, else to the next ones in
    turn; fails with the last error once each has failed once.  A client
    that resumes (a C{ClientService}) calls L{connect} again after a loss,
    so a node that died is left for the next.

    @ivar current: the index of the endpoint tried first next time.
    """

    def __init__(self, endpoints: Sequence[IStreamClientEndpoint], names: Sequence[str]) -> None:
        assert endpoints and len(endpoints) == len(names)
        self.endpoints = list(endpoints)
        self.names = list(names)
        self.current = 0

    @inlineCallbacks
    def connect(self, protocolFactory: IProtocolFactory) -> Any:
        error: Exception = ConnectError("no endpoint")
        for _ in range(len(self.endpoints)):
            try:
                protocol = yield self.endpoints[self.current].connect(protocolFactory)
            except Exception as e:
                error = e
                self.current = (self.current + 1) % len(self.endpoints)
            else:
                return protocol
        raise error

    def __repr__(self) -> str:
        return f"<InTurn {' '.join(self.names)}>"


def inTurn(endpoints: Sequence[IStreamClientEndpoint], names: Sequence[str]) -> IStreamClientEndpoint:
    """
    The one endpoint, or several tried in turn.
    """
    if len(endpoints) == 1:
        return endpoints[0]
    return InTurn(endpoints, names)

