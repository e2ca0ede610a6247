"""
C{python -m streamd.client}: print a stream, and send messages into it.
"""

from __future__ import annotations

import signal
import sys
from typing import Any, TextIO

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, clientFromString
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.stdio import StandardIO
from twisted.internet.task import react
from twisted.protocols.basic import LineReceiver
from twisted.python import usage
from twisted.python.failure import Failure

from streamd.client import StreamClientProtocol, connect
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, FRAMINGS
from streamd.text import printable

PROGRAM = "streamd.client"


def _count(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"--count must be a whole number, not {value!r}")
    return int(value)


def _size(value: str) -> int:
    if not value.isdigit():
        raise ValueError(f"--max-message-size must be a size in bytes, not {value!r}")
    return int(value)


def _port(value: str) -> int:
    if not value.isdigit() or not 0 < int(value) <= 65535:
        raise ValueError(f"--port must be a number from 1 to 65535, not {value!r}")
    return int(value)


class ClientOptions(usage.Options):
    """
    Options of C{python -m streamd.client}.
    """

    synopsis = f"python -m {PROGRAM} [options]"
    longdesc = "Prints every message of a streamd stream on its own line, and can send messages."
    optFlags = [["stdin", None, "Send each line of standard input as one message."]]
    optParameters = [
        ["host", None, "127.0.0.1", "Server host name or address."],
        ["port", "p", 7000, "Server TCP port.", _port],
        ["connect", "c", None, "Any Twisted client endpoint, e.g. tcp:host=example.org:port=7000."],
        ["count", "n", None, "Exit 0 after this many messages (0: only send).", _count],
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE, "Largest message accepted, in bytes.", _size],
        ["framing", None, "int32", f"Wire framing: {' or '.join(FRAMINGS)}."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["send"] = []

    def opt_send(self, text: str) -> None:
        """
        Send TEXT as one message after connecting (repeatable).
        """
        self["send"].append(text)

    def postOptions(self) -> None:
        if self["framing"] not in FRAMINGS:
            raise usage.UsageError(f"unknown framing {self['framing']!r} (known: {', '.join(FRAMINGS)})")

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """
        Where to connect.

        @raise ValueError: for an endpoint description that does not parse.
        """
        if self["connect"] is not None:
            try:
                return clientFromString(reactor, self["connect"])
            except Exception as e:
                raise ValueError(f"bad endpoint {self['connect']!r}: {e}") from None
        return HostnameEndpoint(reactor, self["host"], self["port"])


class Printer:
    """
    Writes each message as one line, and says when C{count} have been shown.
    """

    def __init__(self, out: TextIO, count: int | None) -> None:
        self.out = out
        self.remaining = count
        self.enough: Deferred[None] = Deferred()

    def __call__(self, payload: bytes) -> None:
        if self.remaining == 0:
            return
        try:
            self.out.write(printable(payload) + "\n")
            self.out.flush()
        except BrokenPipeError:
            self.remaining = 1
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining == 0:
                self.enough.callback(None)


class LineSender(LineReceiver):
    """
    Sends each line of standard input as one message.
    """

    delimiter = b"\n"

    def __init__(self, client: StreamClientProtocol, whenDone: Deferred[None]) -> None:
        self.client = client
        self.whenDone = whenDone
        self.MAX_LENGTH = client.MAX_LENGTH

    def lineReceived(self, line: bytes) -> None:
        self.client.sendString(line.removesuffix(b"\r"))

    def lineLengthExceeded(self, line: bytes) -> Any:
        sys.stderr.write(f"{PROGRAM}: skipped a line longer than {self.MAX_LENGTH} bytes\n")
        self.clearLineBuffer()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.whenDone.callback(None)


def fail(message: str, code: int = 1) -> SystemExit:
    """
    The exit for a user-facing error: one line on stderr.
    """
    sys.stderr.write(f"{PROGRAM}: {message}\n")
    return SystemExit(code)


@inlineCallbacks
def run(reactor: Any, argv: list[str], out: TextIO, stdin: Any = StandardIO) -> Any:
    """
    The whole client; finishes with the process's exit status.
    """
    options = ClientOptions()
    try:
        options.parseOptions(argv)
        endpoint = options.endpoint(reactor)
    except usage.UsageError as e:
        raise fail(f"{e} (see --help)", 2)
    except ValueError as e:
        raise fail(str(e))
    printer = Printer(out, options["count"])
    try:
        client = yield connect(
            reactor, endpoint, printer, options["max-message-size"], FRAMINGS[options["framing"]]
        )
    except ConnectError as e:
        raise fail(f"cannot connect: {e}")
    for text in options["send"]:
        client.sendString(text.encode("utf-8"))
    sending: Deferred[None] | None = None
    if options["stdin"]:
        sending = Deferred()
        stdin(LineSender(client, sending), reactor=reactor)
    onlySending = options["count"] == 0
    if onlySending:
        if sending is not None:
            yield sending
        client.transport.loseConnection()
    else:
        printer.enough.addCallback(lambda _: client.transport.loseConnection())
    try:
        yield client.finished
    except Exception:
        reason = Failure()
        if printer.remaining == 0:
            return 0
        if client.frameError is not None:
            raise fail(f"server {client.frameError}")
        raise fail(f"connection lost: {reason.getErrorMessage()}")
    return 0


def main(reactor: Any, *argv: str) -> Deferred[Any]:
    """
    Entry point for L{react}: exit 130 on Ctrl-C, without a traceback.
    """
    outcome: Deferred[Any] = Deferred()
    signal.signal(
        signal.SIGINT, lambda *_: reactor.callFromThread(_settle, outcome, Failure(SystemExit(130)))
    )
    run(reactor, list(argv), sys.stdout).addBoth(lambda result: _settle(outcome, result))
    return outcome.addCallback(_exit)


def _settle(outcome: Deferred[Any], result: object) -> None:
    if not outcome.called:
        outcome.callback(result)


def _exit(code: int) -> None:
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    react(main, sys.argv[1:])
