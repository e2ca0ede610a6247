"""
C{python -m streamd.client --framing seq [--resume] [--last N] [--show-seq]
[--stream NAME_OR_PATTERN ...]}: the command-line client of a C{seq}
listener.
"""

from __future__ import annotations

from typing import Any, TextIO

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.stdio import StandardIO
from twisted.python.failure import Failure

from streamd.client import ClientTimeout, ConnectTimeout, HandshakeTimeout
from streamd.client.lines import LineSender
from streamd.client.numbered import NumberedLineSender, NumberedPublisher
from streamd.client.seq import FATAL, SeqClientProtocol, connect, describeBye, describeGap
from streamd.printable import printable
from streamd.reasons import Reason
from streamd.seqframing import Bye, Gap
from streamd.since import parseSince
from streamd.tls import handshakeFailure

PROGRAM = "streamd.client"


@inlineCallbacks
def runSeq(
    reactor: Any,
    options: Any,
    endpoint: IStreamClientEndpoint,
    token: bytes | None,
    out: TextIO,
    err: TextIO,
    stdin: Any = StandardIO,
) -> Any:
    """
    Print every message of a seq listener once, in order; with C{--resume},
    across reconnects, forever.  Each GAP and BYE is one line on C{err}.
    With C{--stream}, each stream's messages (once each, in order per
    stream), each line prefixed with its stream's name; once the server
    has refused every subscription, the client exits 1, and so it does
    when the server refuses what it publishes.
    C{--timeout} bounds each attempt to connect and to get the server's
    HELLO: without C{--resume} the client then gives up, with one line
    saying what the port may be, as the int32 client does; with it, it
    tries again.

    @return: a Deferred that fires with the exit status.
    """
    done: Deferred[int] = Deferred()
    remaining = options["count"]
    showSeq = options["show-seq"]

    def finish(code: int) -> None:
        if not done.called:
            done.callback(code)

    def onMessage(seq: int, payload: bytes, stream: str | None = None) -> None:
        nonlocal remaining
        if remaining == 0:
            return
        line = f"{seq} {printable(payload)}" if showSeq else printable(payload)
        try:
            out.write(line + "\n" if stream is None else f"{stream} {line}\n")
            out.flush()
        except BrokenPipeError:
            finish(0)
        if remaining is not None:
            remaining -= 1
            if remaining == 0:
                finish(0)

    def onGap(gap: Gap, previous: int | None, stream: str | None = None) -> None:
        of = "" if stream is None else f"{stream}: "
        err.write(f"{PROGRAM}: {of}{describeGap(gap, previous)}\n")

    def onRefused(subject: str, text: str) -> None:
        err.write(f"{PROGRAM}: refused {subject}: {text}\n")
        if publishing and subject == publishTo and not client.factory.subscribing:
            # What it sent there is dropped.
            finish(1)
        elif subject in streams and remaining != 0 and not options["stdin"]:
            refused.add(subject)
            if refused.issuperset(streams):
                # Nothing will come to print.
                finish(1)

    def onBye(bye: Bye) -> None:
        err.write(f"{PROGRAM}: {describeBye(bye)}\n")
        if bye.code in FATAL:
            finish(1)

    streams = tuple(options["stream"])
    publishTo = options.publishTo()
    publishing = bool(options["send"] or options["stdin"])
    refused: set[str] = set()
    # --stdin --resume: every line numbered and sent until acknowledged.
    publisher = NumberedPublisher(publishTo) if options["stdin"] and options["resume"] else None
    since = None if options["since"] is None else parseSince(options["since"], reactor.seconds())
    client = connect(
        reactor,
        endpoint,
        (lambda name, seq, payload: onMessage(seq, payload, name)) if streams else onMessage,
        resume=options["resume"],
        last=options["last"],
        onGap=(lambda name, gap, previous: onGap(gap, previous, name)) if streams else onGap,
        onBye=onBye,
        token=token,
        maxMessageSize=options["max-message-size"],
        timeout=options["timeout"] or None,
        streams=streams,
        onRefused=onRefused,
        publishTo=publishTo,
        since=since,
        publisher=publisher,
    )
    try:
        protocol: SeqClientProtocol = yield client.whenConnected()
    except ConnectTimeout as e:
        err.write(f"{PROGRAM}: cannot connect to {options.where()} within {e.seconds:g} s\n")
        return 1
    except (ConnectError, DNSLookupError) as e:
        err.write(f"{PROGRAM}: cannot connect: {e}\n")
        return 1
    for text in options["send"]:
        protocol.sendString(text.encode("utf-8"))
    if publisher is not None:
        read: Deferred[None] = Deferred()
        stdin(NumberedLineSender(publisher, read, options["max-message-size"]), reactor=reactor)
        read.addCallback(lambda _: publisher.finish()).addCallback(lambda _: finish(0))
    elif options["stdin"]:
        sending: Deferred[None] = Deferred()
        stdin(LineSender(protocol, sending, options["max-message-size"]), reactor=reactor)
        yield sending
    if remaining == 0 and publisher is None:
        # Done once the daemon has taken what was sent, or said why not.
        protocol.flushed().addCallbacks(
            lambda _: finish(0), lambda failure: finish(_endStatus(protocol, failure.value, options, err))
        )
    elif not options["resume"] and publisher is None:
        protocol.finished.addCallback(lambda reason: finish(_endStatus(protocol, reason, options, err)))
    code = yield done
    yield client.stop()
    return code


def _endStatus(protocol: SeqClientProtocol, reason: BaseException, options: Any, err: TextIO) -> int:
    """
    The exit status of a client that does not resume, once its one
    connection is closed; says on C{err} why, if the server did not answer
    in time, sent a frame over the client's limit, or closed the
    connection before its HELLO.
    """
    if protocol.tooLong is not None:
        err.write(
            f"{PROGRAM}: the server sent a {protocol.tooLong.length}-byte frame, over this client's limit of"
            f" {protocol.tooLong.limit} (--max-message-size)\n"
        )
        return 1
    if isinstance(reason, ClientTimeout):
        where = options.where()
        if isinstance(reason, HandshakeTimeout):
            why = f"TLS handshake with {where} did not complete within {reason.seconds:g} s: is it a plain (non-TLS) port?"
        else:
            useTLS = "use a tls: endpoint" if options["connect"] else "use --tls"
            why = (
                f"no HELLO from {where} within {reason.seconds:g} s: is it a seq listener (framing=seq),"
                f" or a TLS port ({useTLS})?"
            )
        err.write(f"{PROGRAM}: {why}\n")
        return 1
    if protocol.bye is not None:
        return 0 if protocol.bye.code == Reason.SHUTDOWN.value else 1
    if protocol.hello is None:
        err.write(f"{PROGRAM}: {_beforeHello(protocol, reason, options)}\n")
        return 1
    return 0 if isinstance(reason, ConnectionDone) else 1


def _beforeHello(protocol: SeqClientProtocol, reason: BaseException, options: Any) -> str:
    """
    Why a connection ended before the server's HELLO (and without a BYE),
    with what the port may be.
    """
    where = options.where()
    if protocol.tls and not protocol.handshakeDone:
        failed = handshakeFailure(Failure(reason))
        return failed or f"connection to {where} lost during the TLS handshake: is it a plain (non-TLS) port?"
    return f"the server closed the connection before its HELLO: is {where} a seq listener (framing=seq)?"
