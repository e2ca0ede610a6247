"""
What a web client of several streams asks for: the subjects of its path,
C{/ws/SUBJECTS} or C{/events/SUBJECTS} (stream names and patterns,
comma-separated), and where each stream it knows resumes
(C{?after=POSITION}, repeatable, and an event stream's C{Last-Event-ID});
and what refuses them while an HTTP status can still say so.

A position is C{NAME/EPOCH-SEQ}, the id of an event of the stream
(L{streamd.web.framing.StreamEventFraming}): after message C{SEQ} of the
stream C{NAME} in its epoch C{EPOCH}.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamd.fanout.resume import HEAD, StartRequest
from streamd.fanout.streams import StreamRefused, Streams
from streamd.names import BadName, checkName, checkPattern, isPattern
from streamd.reasons import Reason
from streamd.session import Session
from streamd.subscriptions import FROM_OLDEST
from streamd.web.context import BadPosition, Refusal, startRequest
from streamd.web.parse import BadInput

MAX_SUBJECTS = 64
"""
The most subjects one request names.
"""

ONE_STREAM = "this listener serves one stream, at /ws and /events"
"""
Why a listener without the daemon's streams refuses a named one.
"""


@dataclass(frozen=True)
class StreamsRequest:
    """
    The streams a request asks for: its C{subjects}, and the C{positions}
    (by stream name) where those it knows resume.
    """

    subjects: tuple[str, ...]
    positions: dict[str, StartRequest]

    @property
    def start(self) -> StartRequest:
        """
        Where the streams it names no position for start: at the head; for
        a client that resumes, at their oldest message held, since it may
        have missed any of them while it was away.
        """
        return FROM_OLDEST if self.positions else HEAD


def parseSubjects(text: str) -> tuple[str, ...]:
    """
    The subjects of C{text}, comma-separated stream names and patterns,
    each once.

    @raise BadName: for one that is neither, or more than L{MAX_SUBJECTS}.
    """
    subjects = tuple(dict.fromkeys(checkPattern(subject) for subject in text.split(",")))
    if len(subjects) > MAX_SUBJECTS:
        raise BadName(f"{len(subjects)} subjects in one request, over {MAX_SUBJECTS}")
    return subjects


def parsePosition(text: str) -> tuple[str, StartRequest]:
    """
    The stream and the request of a position, C{NAME/EPOCH-SEQ}.

    @raise BadPosition: for one that is not.
    """
    name, slash, rest = text.strip().partition("/")
    epoch, dash, last = rest.rpartition("-")
    if not slash or not dash:
        raise BadPosition(f"{text!r}, which is not a position: NAME/EPOCH-SEQ")
    try:
        checkName(name)
    except BadName as e:
        raise BadPosition(str(e))
    return name, startRequest(last, epoch)


def streamsRequest(
    subjects: str, parameters: Mapping[str, Sequence[str]], lastEventId: str | None = None
) -> StreamsRequest:
    """
    What a request of C{subjects} with the query C{parameters} (its
    positions C{after}) and an event stream's C{lastEventId} (newer than
    C{after} for its stream) asks for.

    @raise BadName: for subjects that do not parse.
    @raise BadPosition: for a position that does not, or the parameters
        that resume C{/ws} and C{/events} (C{last=}, C{epoch=}), which
        would otherwise be ignored here.
    """
    if "last" in parameters or "epoch" in parameters:
        raise BadPosition("last= and epoch=, which resume /ws and /events (this path resumes with after=)")
    positions = dict(parsePosition(position) for position in parameters.get("after", ()))
    if lastEventId:
        name, request = parsePosition(lastEventId)
        positions[name] = request
    return StreamsRequest(parseSubjects(subjects), positions)


def requestRefusal(error: BadName | BadInput) -> Refusal:
    """
    The answer to a request whose subjects, positions or headers do not
    parse: 400, saying why.
    """
    if isinstance(error, BadPosition):
        text = f"asked for {error}"
    elif isinstance(error, BadName):
        text = f"asked for a subject that is not one: {error}"
    else:
        text = f"sent {error}"
    return Refusal(Reason.BAD_REQUEST, 400, text, {"error": text})


def subscribeRefusal(session: Session, subjects: Sequence[str]) -> Refusal | None:
    """
    Why C{session}'s subscriptions to C{subjects} would be refused, if
    they would, for a client that may read now: a stream it may not read
    (403), or one that cannot be made (see L{streamRefusal}). The streams
    it names are made now, as its subscriptions would make them.
    """
    streams = session.context.streams
    if streams is None:
        return Refusal(
            Reason.BAD_REQUEST, 404, ONE_STREAM, {"error": f"asked for named streams: {ONE_STREAM}"}
        )
    names = [subject for subject in subjects if not isPattern(subject)]
    for name in names:
        if not session.rights.reads(name):
            return Refusal(Reason.FORBIDDEN, 403, f"this client may not read {name!r}", {"stream": name})
    for name in names:
        try:
            streams.open(name)
        except StreamRefused as e:
            return streamRefusal(streams, e)
    return None


def streamRefusal(streams: Streams, refused: StreamRefused) -> Refusal:
    """
    The answer to a request for a stream that cannot be made: 404 when only
    the declared streams exist (C{--streams declared}), else 503 (the
    daemon holds C{--max-streams}); counted as a bad request.
    """
    why = str(refused)
    return Refusal(Reason.BAD_REQUEST, 404 if streams.declaredOnly else 503, why, {"error": why})
