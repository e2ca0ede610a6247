"""
What every HTTP subscriber of one C{--http} listener shares: the hub, the
rules, the daemon's set of connections, and the stream's epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from streamd.auth import Access
from streamd.hub import Hub
from streamd.reasons import Reason
from streamd.server import Connections, ServerConfig

log = Logger()


@dataclass
class WebContext:
    """
    The daemon as the HTTP side sees it.

    @ivar listener: the C{--http} endpoint description, shown in C{/connz}.
    @ivar epoch: names this run's history; with a sequence number it says
        where a subscriber is, across reconnections (not across restarts).
    @ivar publicMetrics: whether C{/metrics} and C{/connz} answer without the
        token (C{--http-public-metrics}).
    """

    hub: Hub
    clock: IReactorTime
    config: ServerConfig
    connections: Connections
    epoch: str
    listener: str = "http"
    publicMetrics: bool = False

    def full(self, peer: str) -> bool:
        """
        Whether the daemon has C{--max-clients} connections already; if so
        the refusal is counted and logged, as for a TCP client.
        """
        if len(self.connections) < self.config.maxClients:
            return False
        self.hub.stats.connectionsRefused += 1
        log.warn(
            "refusing {peer}: {n} clients connected, the --max-clients limit",
            peer=peer,
            n=len(self.connections),
        )
        return True

    def tooSlow(self, peer: str, reason: Reason, behind: int) -> None:
        """
        Log and count the cut of a client the hub found too slow.
        """
        log.warn(
            "{peer} is too slow: {behind} bytes behind ({reason}); disconnecting",
            peer=peer,
            behind=behind,
            reason=reason.label,
        )
        self.hub.stats.slowConsumerDisconnects += 1

    def connected(self, connection: Any) -> None:
        """
        Count C{connection} among the daemon's connections.
        """
        connection.since = self.clock.seconds()
        self.connections.add(connection)
        stats = self.hub.stats
        stats.connections = len(self.connections)
        stats.connectionsTotal += 1
        log.info(
            "{kind} client {peer} connected ({n} connected)",
            kind=connection.kind,
            peer=connection.peer,
            n=len(self.connections),
        )

    def disconnected(self, connection: Any) -> None:
        """
        C{connection} is gone.
        """
        self.connections.discard(connection)
        self.hub.stats.connections = len(self.connections)
        log.info(
            "{kind} client {peer} disconnected: {messagesIn} messages in, {messagesOut} out",
            kind=connection.kind,
            peer=connection.peer,
            messagesIn=connection.messagesIn,
            messagesOut=connection.messagesOut,
        )
        self.connections.settle()

    def accessFor(self, token: bytes | None) -> Access:
        """
        What a client that presented C{token} (or none) may do.
        """
        policy = self.config.access
        if token is None or not policy.expectsToken:
            return policy.initialAccess()
        return max(policy.initialAccess(), policy.accessFor(token))

    def tokenAccepted(self, token: bytes | None) -> bool:
        """
        Whether C{token} may read the stream and the daemon's figures.
        """
        return self.accessFor(token) is not Access.NONE


def bearerToken(header: bytes | str | None) -> bytes | None:
    """
    The token of an C{Authorization: Bearer TOKEN} header, if that is what
    C{header} is.
    """
    if header is None:
        return None
    if isinstance(header, str):
        header = header.encode("latin-1")
    scheme, _, token = header.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()
