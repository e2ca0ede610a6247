"""
TCP listening ports that empty the kernel's queue of new connections before
setting up the connections they took from it.

Twisted's port sets up each connection it accepts (protocol, transport, the
daemon's bookkeeping: about a hundred microseconds) before it accepts the
next.  When thousands of clients connect at once, as they do after a restart
or a network blip, the kernel's queue of completed handshakes (the listen
backlog) fills meanwhile, and the kernel drops the handshakes that find it
full: those clients try again only a second later, then three, then seven.
This port takes every waiting connection off the queue first (one cheap call
each), then sets them up a batch per turn of the reactor, going back to the
queue in between, so the queue stays short and no client waits a second.

It overrides C{doRead} of Twisted's C{tcp.Port} with the same steps, in a
different order, using that module's private accept loop: it is the
C{acceptFirst} shortcut, which borrows what L{streamd._internals} lists and
is taken only where it allows; otherwise Twisted's own port listens.
"""

from __future__ import annotations

import socket
from collections import deque
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import Logger
from twisted.python.failure import Failure

from streamd import _internals

SETUP_BATCH = 64
"""
Accepted connections set up per turn of the reactor while more wait.
"""

ACCEPT_LIMIT = 4096
"""
Connections taken off the kernel's queue per wake-up at most: its whole
length at streamd's listen backlog.
"""

log = Logger()


class AcceptFirstPort(tcp.Port):
    """
    A C{tcp.Port} that accepts every waiting connection before it sets up
    any, then sets them up L{SETUP_BATCH} at a time.
    """

    _waiting: deque[tuple[socket.socket, Any]]
    _setupCall: IDelayedCall | None = None

    def startListening(self) -> None:
        self._waiting = deque()
        super().startListening()

    def doRead(self) -> None:
        try:
            with tcp._BuffersLogs(self._logger.namespace, self._logger.observer) as logger:
                self._waiting.extend(tcp._accept(logger, range(ACCEPT_LIMIT), self.socket, tcp._reservedFD))
        except Exception:
            log.failure("accepting connections on port {port}", port=self._realPortNumber)
        self._setUpSome()

    def _setUpSome(self) -> None:
        """
        Set up the oldest accepted connections; come back next turn if more
        wait.
        """
        self._setupCall = None
        if self.disconnecting:
            # Stopped: connectionLost closes what still waits.
            return
        waiting = self._waiting
        for _ in range(min(SETUP_BATCH, len(waiting))):
            skt, addr = waiting.popleft()
            try:
                self._setUp(skt, addr)
            except Exception:
                log.failure("setting up a connection from {addr}", addr=addr)
                skt.close()
        if waiting and self._setupCall is None:
            self._setupCall = self.reactor.callLater(0, self._setUpSome)  # type: ignore[attr-defined]

    def _setUp(self, skt: socket.socket, addr: Any) -> None:
        """
        What Twisted's port does with each connection it accepts.
        """
        if len(addr) == 4:
            # IPv6: keep the scope ID, as Twisted does.
            host = socket.getnameinfo(addr, socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
            addr = (host[0], *addr[1:])
        protocol = self.factory.buildProtocol(self._buildAddr(addr))  # type: ignore[union-attr]
        if protocol is None:
            skt.close()
            return
        session = self.sessionno
        self.sessionno = session + 1
        transport = self.transport(skt, protocol, addr, self, session, self.reactor)
        protocol.makeConnection(transport)

    def connectionLost(self, reason: Failure) -> None:
        if self._setupCall is not None:
            self._setupCall.cancel()
            self._setupCall = None
        while self._waiting:
            self._waiting.popleft()[0].close()
        super().connectionLost(reason)


class _AcceptFirstReactor:
    """
    A reactor whose C{listenTCP} listens with L{AcceptFirstPort}; everything
    else is the real reactor's.
    """

    def __init__(self, reactor: PosixReactorBase) -> None:
        self._reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> AcceptFirstPort:
        listening = AcceptFirstPort(port, factory, backlog, interface, self._reactor)
        listening.startListening()
        return listening


def acceptFirst(reactor: Any) -> Any:
    """
    C{reactor}, or, for a real POSIX reactor with the C{acceptFirst}
    shortcut allowed, one whose TCP ports are L{AcceptFirstPort}s: give it
    to C{serverFromString}.
    """
    if isinstance(reactor, PosixReactorBase) and _internals.allowed("acceptFirst"):
        return _AcceptFirstReactor(reactor)
    return reactor
