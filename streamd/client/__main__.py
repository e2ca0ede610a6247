"""
C{python -m streamd.client}: print a stream, and send messages into it.
"""

from __future__ import annotations

import os
import signal
import struct
import sys
from importlib.metadata import version
from typing import Any, TextIO

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint, clientFromString, wrapClientTLS
from twisted.internet.error import ConnectError, DNSLookupError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.stdio import StandardIO
from twisted.internet.task import react
from twisted.internet.tcp import Connection
from twisted.python import usage
from twisted.python.failure import Failure

from streamd import _coerce
from streamd.auth import readToken
from streamd.client import ConnectTimeout, HandshakeTimeout, NoDataTimeout, StreamClientProtocol, connect
from streamd.client.failover import inTurn
from streamd.client.lines import LineSender
from streamd.client.seqcli import runSeq
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, FrameError, FrameTooLong
from streamd.listen.endpoints import describeError
from streamd.names import BadName, checkPattern, isPattern
from streamd.printable import printable
from streamd.seqframing import FRAMINGS
from streamd.since import parseSince
from streamd.tls import clientTLS, handshakeFailure

PROGRAM = "streamd.client"
TOKEN_VARIABLE = "STREAMD_TOKEN"
REFUSED_WITHIN = 2.0
"""
Seconds after connecting within which a connection the daemon drops
before any byte is taken for a refusal of the client's token.
"""


class ClientOptions(usage.Options):
    """
    Options of C{python -m streamd.client}.
    """

    synopsis = f"python -m {PROGRAM} [options]"
    longdesc = "Prints every message of a streamd stream on its own line, and can send messages."
    optFlags = [
        ["stdin", None, "Send each line of standard input as one message; --framing seq --resume: each exactly once, across cuts and daemon restarts, exiting 0 once the daemon acknowledged every line."],
        ["tls", None, "Connect with TLS, checking the server's certificate against the system's CAs."],
        ["insecure", None, "TLS without checking the server's certificate (tests only; implies --tls)."],
        ["resume", None, "--framing seq: reconnect forever, resuming after the last message printed."],
        ["show-seq", None, "--framing seq: prefix each line with the message's sequence number."],
    ]
    optParameters = [
        ["host", None, "127.0.0.1", "Server host name or address."],
        ["port", "p", 7000, "Server TCP port.", _coerce.port(1)],
        ["cafile", None, None, "TLS: trust this PEM CA (or self-signed server) certificate; implies --tls."],
        ["cert", None, None, "TLS: PEM client certificate, for servers that ask for one; implies --tls."],
        ["key", None, None, "TLS: PEM private key of --cert (default: read from the --cert file)."],
        ["count", "n", None, "Exit 0 after this many messages (0: only send).", _coerce.count("count")],
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE, "Largest message accepted, in bytes.",
         _coerce.size("max-message-size")],
        ["framing", None, "int32", f"Wire framing: {' or '.join(FRAMINGS)}.",
         _coerce.choice("framing", *FRAMINGS)],
        ["token-file", None, None, f"Send this file's token first (default: ${TOKEN_VARIABLE}, if set)."],
        ["last", None, None, "--framing seq: start with the last N messages.", _coerce.count("last")],
        ["since", None, None, "--framing seq: start with the messages received since then: a time ago (90s, 10m, 2h, 1d) or an ISO time (2024-05-01T12:00:00Z)."],
        [
            "timeout", None, 10.0,
            "Seconds to connect, then to complete the TLS handshake or (without TLS) to receive"
            " the first bytes (--framing seq: the server's HELLO); 0: wait forever.",
            _coerce.seconds("timeout"),
        ],
    ]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        self["send"] = []
        self["connect"] = []
        self["stream"] = []

    def opt_connect(self, description: str) -> None:
        """
        Any Twisted client endpoint: tcp:host=H:port=P, tls:host=H:port=P, ...; repeatable: the nodes of a cluster, tried in turn (with --resume, the next when one is lost).
        """
        self["connect"].append(description)

    opt_c = opt_connect

    def opt_stream(self, subject: str) -> None:
        """
        --framing seq: print the stream of this name, or every stream this pattern matches (prices.*, logs.>), each line prefixed with its stream's name (repeatable); --send and --stdin publish to it (one name).
        """
        try:
            self["stream"].append(checkPattern(subject))
        except BadName as e:
            raise usage.UsageError(f"--stream: {e}") from None

    def opt_send(self, text: str) -> None:
        """
        Send TEXT as one message after connecting (repeatable).
        """
        self["send"].append(text)

    def opt_version(self) -> None:
        """
        Print streamd's version and exit.
        """
        print(f"streamd {version('streamd')}")
        raise SystemExit(0)

    def postOptions(self) -> None:
        tlsOptions = [f"--{name}" for name in ("tls", "insecure", "cafile", "cert", "key") if self[name]]
        if tlsOptions and self["connect"]:
            raise usage.UsageError(
                f"{' '.join(tlsOptions)} go with --host/--port; with --connect, use"
                " tls:host=HOST:port=PORT[:trustRoots=DIR][:certificate=FILE:privateKey=FILE]"
            )
        if self["key"] is not None and self["cert"] is None:
            raise usage.UsageError("--key needs --cert")
        if self["insecure"] and self["cafile"] is not None:
            raise usage.UsageError("--insecure checks nothing, so --cafile would be ignored; choose one")
        self["tls"] = bool(tlsOptions)
        seqOnly = self["resume"] or self["show-seq"] or self["last"] is not None or self["stream"] or self["since"]
        if self["framing"] != "seq" and seqOnly:
            raise usage.UsageError(
                "--resume, --last, --since, --show-seq and --stream need --framing seq"
                " (an int32 listener serves the stream its :stream= names)"
            )
        if self["since"] is not None:
            try:
                parseSince(self["since"], 0.0)
            except ValueError as e:
                raise usage.UsageError(f"--since: {e}") from None
            if self["last"] is not None:
                raise usage.UsageError("--since and --last both say where to start: give one")
        if (self["send"] or self["stdin"]) and self.publishTo() is None and self["stream"]:
            raise usage.UsageError(
                "--send and --stdin publish to one stream: give one --stream NAME, not a pattern"
            )

    def publishTo(self) -> str | None:
        """
        The stream --send and --stdin publish to: the one --stream, if it
        is a name.
        """
        streams = self["stream"]
        return streams[0] if len(streams) == 1 and not isPattern(streams[0]) else None

    def token(self) -> bytes | None:
        """
        The token to send first: from --token-file, else from the environment.

        @raise ValueError: for a token file that cannot be read or is empty.
        """
        if self["token-file"] is None:
            fromEnvironment = os.environ.get(TOKEN_VARIABLE, "").strip()
            return fromEnvironment.encode() if fromEnvironment else None
        return readToken(self["token-file"])

    def where(self) -> str:
        """
        The server, as the user named it.
        """
        if self["connect"]:
            return " or ".join(self["connect"])
        host = self["host"]
        return f"[{host}]:{self['port']}" if ":" in host else f"{host}:{self['port']}"

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """
        Where to connect.

        @raise ValueError: for an endpoint description that does not parse,
            or a TLS file that cannot be used.
        """
        if self["connect"]:
            endpoints = []
            for description in self["connect"]:
                try:
                    endpoints.append(clientFromString(reactor, description))
                except Exception as e:
                    # Some errors (a trustRoots=DIR that cannot be listed) carry their reason inside.
                    inner = getattr(e, "originalException", None)
                    detail = describeError(e if str(e) or not isinstance(inner, Exception) else inner)
                    raise ValueError(f"bad endpoint {description!r}: {detail}") from None
            return inTurn(endpoints, self["connect"])
        endpoint = HostnameEndpoint(reactor, self["host"], self["port"])
        if not self["tls"]:
            return endpoint
        settings = clientTLS(self["host"], self["cafile"], self["cert"], self["key"], self["insecure"])
        return wrapClientTLS(settings, endpoint)


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


def finishSending(reactor: Any, client: StreamClientProtocol, patience: float = 5.0) -> None:
    """
    Say we are done sending, and let the server close the connection.

    Over TCP this is a half-close: a server that took every message closes
    cleanly, one that rejected them resets the connection, so the exit status
    tells which.  A server that keeps the connection open is left after
    C{patience} seconds.  Over TLS, which cannot half-close, the connection
    is simply closed.
    """
    transport = client.transport
    if isinstance(transport, Connection):
        transport.loseWriteConnection()
        timeout = reactor.callLater(patience, transport.loseConnection)

        def closed(result: object) -> object:
            if timeout.active():
                timeout.cancel()
            return result

        client.finished.addBoth(closed)
    else:
        transport.loseConnection()


class Fail(Exception):
    """
    The exit for a user-facing error: one line on stderr, said when the
    client ends (and not at all if Ctrl-C ended it first).
    """

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@inlineCallbacks
def run(reactor: Any, argv: list[str], out: TextIO, stdin: Any = StandardIO) -> Any:
    """
    The whole client; finishes with the process's exit status.
    """
    options = ClientOptions()
    try:
        options.parseOptions(argv)
        endpoint = options.endpoint(reactor)
        token = options.token()
    except usage.UsageError as e:
        raise Fail(f"{_coerce.oneLine(e)} (see --help)", 2)
    except ValueError as e:
        raise Fail(str(e))
    if options["insecure"]:
        sys.stderr.write(
            f"{PROGRAM}: WARNING: --insecure: the server's certificate is NOT checked;"
            " anyone on the network path can read and change this stream\n"
        )
    if options["framing"] == "seq":
        return (yield runSeq(reactor, options, endpoint, token, out, sys.stderr, stdin))
    printer = Printer(out, options["count"])
    onlySending = options["count"] == 0
    timeout = options["timeout"] or None
    try:
        client = yield connect(
            reactor,
            endpoint,
            printer,
            options["max-message-size"],
            FRAMINGS[options["framing"]],
            token,
            timeout=timeout,
            expectData=not onlySending,
        )
    except ConnectTimeout as e:
        raise Fail(f"cannot connect to {options.where()} within {e.seconds:g} s")
    except (ConnectError, DNSLookupError) as e:
        raise Fail(f"cannot connect: {e}")
    connected = reactor.seconds()
    for text in options["send"]:
        client.sendString(text.encode("utf-8"))
    sending: Deferred[None] | None = None
    if options["stdin"]:
        sending = Deferred()
        stdin(LineSender(client, sending, client.MAX_LENGTH), reactor=reactor)
    if onlySending:
        if sending is not None:
            yield sending
        finishSending(reactor, client)
    else:
        printer.enough.addCallback(lambda _: client.transport.loseConnection())
    try:
        yield client.finished
    except Exception:
        reason = Failure()
        wrongPort = _wrongPort(reason, client, options)
        if wrongPort is not None:
            raise Fail(wrongPort)
        handshake = handshakeFailure(reason)
        if handshake is not None:
            raise Fail(handshake)
        if printer.enough.called:
            # The connection went after we had what we asked for.
            return 0
        if client.frameError is not None:
            raise Fail(f"server {client.frameError}{_framingHint(client.frameError, options)}")
        if token is not None and not client.heard and reactor.seconds() - connected < REFUSED_WITHIN:
            raise Fail(
                f"{options.where()} closed the connection right after this client's token, before any"
                f" message: is the token wrong (--token-file, ${TOKEN_VARIABLE}), not allowed what was"
                " asked, or the daemon full (--max-clients)? See the daemon's log."
            )
        raise Fail(f"connection lost: {reason.getErrorMessage()}")
    return 0


def _wrongPort(reason: Failure, client: StreamClientProtocol, options: ClientOptions) -> str | None:
    """
    What to say when the connection failed the way connections to the wrong
    kind of port (TLS or plain) fail, or C{None}.
    """
    where, error = options.where(), reason.value
    plainPort = "is it a plain (non-TLS) port?"
    if isinstance(error, HandshakeTimeout):
        return f"TLS handshake with {where} did not complete within {error.seconds:g} s: {plainPort}"
    if isinstance(error, NoDataTimeout):
        useTLS = "use a tls: endpoint" if options["connect"] else "use --tls"
        return (
            f"no data from {where} within {error.seconds:g} s: is it a TLS port ({useTLS}), a seq listener"
            " (use --framing seq), or a quiet stream (use --timeout 0 to wait forever)?"
        )
    if client.tls and not client.handshakeDone and handshakeFailure(reason) is None:
        return f"connection to {where} lost during the TLS handshake: {plainPort}"
    return None


def _framingHint(error: FrameError, options: ClientOptions) -> str:
    """
    A hint for an int32 client whose server announced a frame whose length
    header reads as text: the header of an ascii10 listener.
    """
    if isinstance(error, FrameTooLong) and options["framing"] == "int32":
        header = struct.pack(">I", error.length)
        if header.strip(b" ").isdigit():
            return " (is it an ascii10 listener? use --framing ascii10)"
    return ""


def main(reactor: Any, *argv: str) -> Deferred[Any]:
    """
    Entry point for C{react}: Ctrl-C (SIGINT) exits 130 and SIGTERM 143, as
    a shell reports a command that a signal ended, with nothing on stderr.
    """
    outcome: Deferred[Any] = Deferred()

    def stopped(number: int, frame: object) -> None:
        reactor.callFromThread(_settle, outcome, Failure(SystemExit(128 + number)))

    signal.signal(signal.SIGINT, stopped)
    signal.signal(signal.SIGTERM, stopped)
    # The reactor sets its own SIGTERM handler as it starts (it leaves a SIGINT
    # one alone); that one stops the reactor a second time if the client is
    # already stopping, and reports the connection it closes as lost.
    reactor.callWhenRunning(signal.signal, signal.SIGTERM, stopped)
    run(reactor, list(argv), sys.stdout).addBoth(lambda result: _settle(outcome, result))
    return outcome.addCallback(_exit)


def _settle(outcome: Deferred[Any], result: object) -> None:
    if outcome.called:
        return
    if isinstance(result, Failure) and isinstance(result.value, Fail):
        sys.stderr.write(f"{PROGRAM}: {result.value.message}\n")
        result = Failure(SystemExit(result.value.code))
    outcome.callback(result)


def _exit(code: int) -> None:
    if code:
        raise SystemExit(code)


if __name__ == "__main__":
    react(main, sys.argv[1:])
