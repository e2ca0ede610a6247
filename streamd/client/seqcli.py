"""
C{python -m streamd.client --framing seq [--resume] [--last N] [--show-seq]}:
the command-line client of a C{seq} listener.
"""

from __future__ import annotations

from typing import Any, TextIO

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectError, ConnectionDone, DNSLookupError
from twisted.internet.interfaces import IStreamClientEndpoint

from streamd.client.seq import FATAL, SeqClientProtocol, connect, describeBye, describeGap
from streamd.reasons import Reason
from streamd.seqframing import Bye, Gap
from streamd.text import printable

PROGRAM = "streamd.client"


@inlineCallbacks
def runSeq(
    reactor: Any, options: Any, endpoint: IStreamClientEndpoint, token: bytes | None, out: TextIO, err: TextIO
) -> Any:
    """
    Print every message of a seq listener once, in order; with C{--resume},
    across reconnects, forever.  Each GAP and BYE is one line on C{err}.

    @return: a Deferred that fires with the exit status.
    """
    done: Deferred[int] = Deferred()
    remaining = options["count"]
    showSeq = options["show-seq"]

    def finish(code: int) -> None:
        if not done.called:
            done.callback(code)

    def onMessage(seq: int, payload: bytes) -> None:
        nonlocal remaining
        if remaining == 0:
            return
        try:
            out.write(f"{seq} {printable(payload)}\n" if showSeq else printable(payload) + "\n")
            out.flush()
        except BrokenPipeError:
            finish(0)
        if remaining is not None:
            remaining -= 1
            if remaining == 0:
                finish(0)

    def onGap(gap: Gap, previous: int | None) -> None:
        err.write(f"{PROGRAM}: {describeGap(gap, previous)}\n")

    def onBye(bye: Bye) -> None:
        err.write(f"{PROGRAM}: {describeBye(bye)}\n")
        if bye.code in FATAL:
            finish(1)

    client = connect(
        reactor,
        endpoint,
        onMessage,
        resume=options["resume"],
        last=options["last"],
        onGap=onGap,
        onBye=onBye,
        token=token,
        maxMessageSize=options["max-message-size"],
    )
    try:
        protocol: SeqClientProtocol = yield client.whenConnected()
    except (ConnectError, DNSLookupError) as e:
        err.write(f"{PROGRAM}: cannot connect: {e}\n")
        return 1
    for text in options["send"]:
        protocol.sendString(text.encode("utf-8"))
    if remaining == 0:
        finish(0)
    elif not options["resume"]:
        protocol.finished.addCallback(lambda reason: finish(_endStatus(protocol, reason)))
    code = yield done
    yield client.stop()
    return code


def _endStatus(protocol: SeqClientProtocol, reason: BaseException) -> int:
    """
    The exit status of a client that does not resume, once its one
    connection is closed.
    """
    if protocol.bye is not None:
        return 0 if protocol.bye.code == Reason.SHUTDOWN.value else 1
    return 0 if isinstance(reason, ConnectionDone) else 1
