"""
Listening on one endpoint, and saying where.
"""

from __future__ import annotations

from twisted.application.service import Service
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from streamd.names import DEFAULT
from streamd.protocol import addressName

_EVERY_INTERFACE = ("0.0.0.0", "::")


class ListenFailed(Exception):
    """
    An endpoint could not listen (address in use, no permission, ...).
    """


class ListenerService(Service):
    """
    Listens on C{endpoint} while running, and logs the real address it got
    (port 0 picks a free port).

    It listens in L{privilegedStartService}, so that twistd can bind a low port
    before dropping privileges (once: a daemon that twistd daemonises listens
    before the fork, see L{streamd.tap.makeService}); an endpoint that fails
    to listen there and then raises L{ListenFailed} instead of leaving a
    daemon that serves nothing.
    """

    log = Logger()
    port: IListeningPort | None = None
    _listenCalled = False

    def __init__(self, description: str, endpoint: IStreamServerEndpoint, factory: IProtocolFactory) -> None:
        self.description = description
        self.endpoint = endpoint
        self.factory = factory

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        if self._listenCalled:
            return
        self._listenCalled = True
        failures: list[Failure] = []
        synchronous = True

        def failed(failure: Failure) -> None:
            if synchronous:
                failures.append(failure)
            else:
                # An endpoint that failed later: nobody is there to raise to.
                self.log.critical(
                    "streamd: cannot listen on {description}: {reason}",
                    description=self.description,
                    reason=failure.getErrorMessage(),
                )

        self.endpoint.listen(self.factory).addCallbacks(self._listening, failed)
        synchronous = False
        if failures:
            raise ListenFailed(f"cannot listen on {_whereAndWhy(self.description, failures[0])}")

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        if self.running:
            self._announce(port)

    def _announce(self, port: IListeningPort) -> None:
        """
        Say where C{port} listens: once running, so that a daemon that
        listened before twistd forked says so only when it is about to
        serve (a line a supervisor may take as "ready").
        """
        address = port.getHost()
        self.log.info(
            "streamd listening on {address}{framing}",
            address=addressName(address),
            framing=_framingNote(self.factory),
        )
        if getattr(address, "host", None) in _EVERY_INTERFACE:
            self.log.warn(
                "{address} is open to every interface: anyone who can reach this machine can connect "
                "(give interface=127.0.0.1 in {description} to keep it local)",
                address=addressName(address),
                description=self.description,
            )

    def startService(self) -> None:
        if not self._listenCalled:
            self.privilegedStartService()
        super().startService()
        if self.port is not None:
            self._announce(self.port)

    def stopService(self) -> object:
        super().stopService()
        port, self.port = self.port, None
        self._listenCalled = False
        if port is not None:
            return port.stopListening()
        return None


def _whereAndWhy(description: str, failure: Failure) -> str:
    """
    The address and the reason of a failure to listen, short enough for the
    100 bytes twistd passes from a daemonised child to its waiting parent.
    """
    error = failure.value
    if isinstance(error, CannotListenError):
        where = description if error.interface is None else f"{error.interface or '0.0.0.0'}:{error.port}"
        why = getattr(error.socketError, "strerror", None) or str(error.socketError)
        return f"{where}: {why}"
    if isinstance(error, OSError) and error.strerror:
        # A UNIX socket's lock file in a missing directory, say: its
        # message would name the lock file's bytes.
        return f"{description}: {error.strerror}"
    return f"{description}: {failure.getErrorMessage()}"


def _framingNote(factory: IProtocolFactory) -> str:
    """
    What the log line says of a listener besides its address: its framing
    (unless C{int32}) and its stream (unless C{default}).
    """
    framing = getattr(factory, "framing", None)
    hub = getattr(factory, "hub", None)
    notes = [] if framing is None or framing.name == "int32" else [f"{framing.name} framing"]
    if hub is not None and hub.name != DEFAULT:
        notes.append(f"stream {hub.name}")
    return f" ({', '.join(notes)})" if notes else ""
