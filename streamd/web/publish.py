"""
C{POST /streams/NAME}: publishing over HTTP.

The body is one message; with C{Content-Type: application/x-streamd-int32}
it is int32 frames, one message each, published together.  Each request has
a session of its own (each carries its own token), which holds it to the
rules of every publisher: the origin, the token (C{Authorization: Bearer}
only), C{--read-only}, C{--publish-token-file}, the streams its token may
publish to, C{--max-message-size}.  The answer says the numbers the
messages took.  How much body a request may send, and how fast, is its
HTTP connection's rule (L{streamd.web.channel}).
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.web.server import Request
from zope.interface import implementer

from streamd.auth import Access
from streamd.config import ServerConfig
from streamd.fanout.hub import Hub
from streamd.fanout.resume import Gap, StartPoint
from streamd.fanout.streams import StreamRefused
from streamd.framing import INT32, FrameTooLong, Framing, Payload
from streamd.names import BadName, checkName
from streamd.protocol import addressName
from streamd.reasons import Reason
from streamd.session import ISessionAdapter, Session
from streamd.web.context import Refusal, WebContext, bearerToken
from streamd.web.subjects import ONE_STREAM, streamRefusal

INT32_TYPE = b"application/x-streamd-int32"
"""
The content type of a body of int32 frames.
"""

PATH = b"/streams/"
"""
Where a stream is published to: C{PATH + NAME}.
"""

MAX_BATCH = 1 << 20
"""
The most bytes a body of several messages may have (one message may have
C{--max-message-size}, if that is more).
"""


def takesBody(method: bytes, target: bytes) -> bool:
    """
    Whether a request of C{method} for C{target} (its path and query) is
    one whose body is read: C{POST /streams/NAME}.
    """
    return method == b"POST" and target.startswith(PATH) and len(target) > len(PATH)


def bodyLimit(config: ServerConfig) -> int:
    """
    The most bytes a request's body may have: L{MAX_BATCH}, or one message
    of C{--max-message-size} in its int32 frame if that is more.
    """
    return max(config.maxMessageSize + INT32.headerSize, MAX_BATCH)


@implementer(IPushProducer)
class _Unpaced:
    """
    The publisher a request's stream is told of: never paused, as there is
    nothing left to pause once a request publishes its body, read whole.
    """

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(ISessionAdapter)
class HTTPPublisher:
    """
    The adapter of one publishing request's L{Session}: it is never sent a
    stream, and a refusal is its HTTP answer.
    """

    kind = "http"
    protocol = "http"
    ping = None
    pingAnswered = False
    _refusal: Refusal | None = None

    def __init__(self, context: WebContext, request: Request) -> None:
        self.context = context
        self.request = request
        self.peer = addressName(request.getClientAddress())
        self.transport = _Unpaced()
        # The requests of a listener share the lines of what they publish.
        self.session = Session(context, self, context.publishLines)

    def answer(self, name: str) -> bytes:
        """
        Publish the request's body to the stream C{name}, if it may, and
        say the numbers its messages took: C{{"stream", "first", "last"}};
        or, where a cluster's stream numbers them (JetStream), that they
        were handed to it: 202, C{{"stream", "accepted"}}.
        """
        session = self.session
        admitted = self._admitted(name)
        if admitted is not None:
            hub, payloads, raw, framing = admitted
            session.publish(payloads, raw, framing, stream=name)
        session.lost("answered")
        if admitted is None or self._refusal is not None:
            return self._refused()
        if hub.upstream is not None:
            return self._json(202, {"stream": name, "accepted": len(payloads)})
        last = hub.history.nextSequence - 1
        return self._json(200, {"stream": name, "first": last - len(payloads) + 1, "last": last})

    def _admitted(self, name: str) -> tuple[Hub, list[Payload], bytes, Framing | None] | None:
        """
        The stream C{name}, the messages of the body, and the body as it
        came if the history may keep it so; C{None} if the request is
        refused: a page of another origin, a wrong or missing token, a name
        that is not one, a body that is not messages, a client that may not
        publish there, a stream that cannot be made.
        """
        session = self.session
        request = self.request
        if not session.checkOrigin(_header(request, b"origin"), _header(request, b"host")):
            return None
        token = bearerToken(request.getHeader(b"authorization"))
        if token is not None and not session.authenticate(token):
            return None
        if session.access is Access.NONE:
            session.drop(Reason.AUTH_FAILED)
            return None
        try:
            checkName(name)
            payloads, raw, framing = self._messages()
        except BadName as e:
            return self._refuse(
                Refusal(Reason.BAD_REQUEST, 400, str(e), {"error": f"published to no stream: {e}"})
            )
        except FrameTooLong as e:
            return self._refuse(Refusal.of(Reason.OVERSIZED_FRAME, length=e.length, limit=e.limit))
        except ValueError as e:
            return self._refuse(Refusal(Reason.BAD_REQUEST, 400, str(e), {"error": f"sent {e}"}))
        if session.access is not Access.PUBLISH or not session.rights.publishes(name):
            why = f"this client may not publish to {name!r}"
            return self._refuse(Refusal(Reason.READ_ONLY, 403, why, {"count": len(payloads)}))
        streams = self.context.streams
        if streams is None:
            return self._refuse(Refusal(Reason.BAD_REQUEST, 404, ONE_STREAM, {"error": ONE_STREAM}))
        try:
            return streams.open(name), payloads, raw, framing
        except StreamRefused as e:
            return self._refuse(streamRefusal(streams, e))

    def _messages(self) -> tuple[list[Payload], bytes, Framing | None]:
        """
        The messages of the body, and the body itself if it is frames of a
        framing (the history keeps them as they came).

        @raise FrameTooLong: for a message over C{--max-message-size}.
        @raise ValueError: for int32 frames that end inside one, or none.
        """
        request = self.request
        assert request.content is not None
        body = request.content.getvalue()  # type: ignore[attr-defined]
        limit = self.context.config.maxMessageSize
        contentType = (request.getHeader(b"content-type") or b"").partition(b";")[0].strip().lower()
        if contentType != INT32_TYPE:
            if len(body) > limit:
                raise FrameTooLong(len(body), limit)
            return [body], b"", None
        decoder = INT32.decoder(limit)
        payloads, raw = decoder.feed(body)
        if isinstance(decoder.error, FrameTooLong):
            raise decoder.error
        if len(raw) != len(body) or not payloads:
            raise ValueError(f"a body of {len(body)} bytes that is not whole int32 frames")
        return payloads, raw, INT32

    def _refuse(self, refusal: Refusal) -> tuple[Hub, list[Payload], bytes, Framing | None] | None:
        """
        Refuse the request with C{refusal}, counted and logged as its
        session's goodbye: it publishes nothing.
        """
        self._refusal = refusal
        self.session.drop(refusal.reason, **refusal.figures)
        return None

    def _refused(self) -> bytes:
        refusal = self._refusal
        assert refusal is not None
        request = self.request
        request.setResponseCode(refusal.status)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        if refusal.reason is Reason.AUTH_FAILED:
            request.setHeader(b"www-authenticate", b"Bearer")
        return refusal.text.encode() + b"\n"

    def _json(self, status: int, body: dict[str, Any]) -> bytes:
        request = self.request
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()

    # What the session asks of every transport.

    def activity(self) -> tuple[int, int]:
        return (0, 0)

    def goodbye(self, reason: Reason) -> bool:
        """
        The request is refused for C{reason}: its answer says so.
        """
        if self._refusal is None or self._refusal.reason is not reason:
            self._refusal = Refusal.of(reason)
        return False

    def refusal(self, subject: str, why: str) -> None:
        """
        A request that cannot be told anything but its answer is refused
        (L{goodbye}).
        """
        return None

    def abort(self) -> None:
        transport: Any = self.request.transport
        if transport is not None:
            transport.abortConnection()

    # A request is sent no stream: the session never asks for these.

    def greeting(self, point: StartPoint | None, hub: Hub) -> bytes:
        raise NotImplementedError("a publishing request is sent no stream")

    def gapNotice(self, gap: Gap, hub: Hub) -> None:
        raise NotImplementedError("a publishing request is sent no stream")

    def ownNotice(self, first: int, last: int, hub: Hub) -> None:
        raise NotImplementedError("a publishing request is sent no stream")

    def framingFor(self, hub: Hub) -> Framing:
        raise NotImplementedError("a publishing request is sent no stream")


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return None if value is None else value.decode("latin-1")
