"""
The fence around what streamd borrows from other projects' internals.

streamd takes three shortcuts through Twisted's internals, each behind a
switch of its own (L{streamd.config.Shortcuts}, C{twistd streamd
--no-fast-write}, C{--no-big-reads}, C{--no-accept-first}):

  - C{fastWrite}: L{streamd.fanout.socketcursor.SocketCursor} sends to a client's
    socket itself instead of through Twisted's write buffer (after what a
    protocol wrote to that buffer itself, such as a WebSocket handshake's
    answer);
  - C{bigReads}: a publishing client's transport reads up to
    L{streamd.reads.READ_SIZE} bytes at once, not 64 KiB, after a read
    that brought 64 KiB (L{streamd.reads.readTarget}), and a framed
    protocol sizes each read to end on a frame
    (L{streamd.framing.Decoder.readSize});
  - C{acceptFirst}: L{streamd.listen.accept.AcceptFirstPort} accepts every waiting
    connection before it sets any up.

Each is taken only while its switch is on, C{STREAMD_FASTWRITE=0} is not
set (it turns all three off), and the running Twisted is a release in
L{TESTED_TWISTED}; outside that range streamd logs once and uses Twisted's
public behaviour.  L{BORROWED} names every internal each shortcut relies
on, and C{tests/test_internals.py} holds one contract test per name, which
checks what the name I{does}, so that a Twisted release that changed it
fails there before it is admitted into L{TESTED_TWISTED}.

One more internal is nats-py's: L{stopConsumerTasks}, checked by
C{tests/integration/test_internals_nats.py} against a real nats-server.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger

from streamd.config import Shortcuts

TESTED_TWISTED = ((23, 10), (26, 10))
"""
The oldest and newest (major, minor) releases of Twisted whose internals
the shortcuts have been tested with, both included: the floor of
C{setup.cfg} and the newest that C{.ci/run} installs.
"""

BORROWED: dict[str, tuple[str, ...]] = {
    "fastWrite": (
        "twisted.internet.tcp.Connection.socket",
        "twisted.internet.abstract.FileDescriptor.startWriting",
        "twisted.internet.abstract.FileDescriptor.doWrite (resumes a pull producer when empty)",
        "twisted.internet.abstract.FileDescriptor.doWrite (sends its buffer before it resumes a pull producer)",
    ),
    "bigReads": ("twisted.internet.abstract.FileDescriptor.bufferSize",),
    "acceptFirst": (
        "twisted.internet.tcp._accept",
        "twisted.internet.tcp._BuffersLogs",
        "twisted.internet.tcp._reservedFD",
        "twisted.internet.tcp.Port._logger",
        "twisted.internet.tcp.Port._realPortNumber",
        "twisted.internet.tcp.Port._buildAddr",
        "twisted.internet.tcp.Port.sessionno",
        "twisted.internet.tcp.Port.transport",
        "twisted.internet.tcp.Port.doRead (what it does with each connection)",
    ),
}
"""
Every internal of Twisted each shortcut relies on.
"""

NATS_BORROWED = (
    "nats.js.client.JetStreamContext.PushSubscription._sub._jsi._hbtask",
    "nats.js.client.JetStreamContext.PushSubscription._sub._jsi._fctask",
)
"""
The internals of nats-py that L{stopConsumerTasks} relies on.
"""

SWITCH_VARIABLE = "STREAMD_FASTWRITE"

log = Logger()

_inForce = Shortcuts()
_checked = False
_refusal: str | None = None


def twistedRelease() -> tuple[int, int]:
    """
    The running Twisted's (major, minor) release.
    """
    from twisted import version

    return (int(version.major), int(version.minor))


def refusal(environ: Any = None, release: tuple[int, int] | None = None) -> str | None:
    """
    Why no shortcut may be taken at all, or C{None} if they may.

    @param environ: the environment (default C{os.environ}).
    @param release: the Twisted release (default the running one).
    """
    environ = os.environ if environ is None else environ
    if environ.get(SWITCH_VARIABLE, "1") == "0":
        return f"{SWITCH_VARIABLE}=0"
    release = twistedRelease() if release is None else release
    low, high = TESTED_TWISTED
    if not low <= release <= high:
        return "Twisted {} is outside the tested {}-{}".format(*(".".join(map(str, r)) for r in (release, low, high)))
    return None


def use(shortcuts: Shortcuts) -> None:
    """
    Take the shortcuts that C{shortcuts} switches on (where L{refusal}
    allows) from now on: the daemon's configuration says this once.
    """
    global _inForce
    _inForce = shortcuts


def allowed(name: str) -> bool:
    """
    Whether the shortcut C{name} (a field of L{Shortcuts}) may be taken now;
    the first time L{refusal} forbids them all, say so in the log.
    """
    global _checked, _refusal
    if not _checked:
        _checked, _refusal = True, refusal()
        if _refusal is not None:
            log.info(
                "streamd: the shortcuts through Twisted's internals are off ({why}): every client is"
                " written through Twisted's buffer, read 64 KiB at a time, and accepted by Twisted's port",
                why=_refusal,
            )
    return _refusal is None and bool(getattr(_inForce, name))


def stopConsumerTasks(subscription: Any) -> bool:
    """
    Cancel the heartbeat and flow-control tasks of a nats-py JetStream push
    subscription, which C{unsubscribe} cancels only after the server
    answered: when the connection is gone, they would run on.

    @return: whether the subscription had them where nats-py 2 keeps them
        (C{sub._sub._jsi}); if not, nothing is cancelled.
    """
    state = getattr(getattr(subscription, "_sub", None), "_jsi", None)
    if state is None or not hasattr(state, "_hbtask") or not hasattr(state, "_fctask"):
        return False
    for task in (state._hbtask, state._fctask):
        if task is not None:
            task.cancel()
    return True
