"""
One client per transport, for the tests that run the same behaviour over
every one (C{tests/test_session.py}): each connects to an in-memory daemon
on a L{Clock} as a real client would (through the listener's factory or
the HTTP site, on a test transport), and reads back what the daemon said,
in one vocabulary: stream messages, notices (hello, gap, own) and the
goodbye.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from struct import pack
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from streamd.config import FlowControl, ServerConfig
from streamd.fanout.resume import Gap, GapReason, Start
from streamd.fanout.streams import Streams
from streamd.framing import ASCII10, INT32, Framing
from streamd.names import DEFAULT
from streamd.reasons import Reason
from streamd.seqframing import (
    SEQ,
    Auth,
    Batch,
    Bye,
    ClientHello,
    Msg,
    Ping,
    Pong,
    Pub,
    Refused,
    SBatch,
    ServerHello,
    SGap,
    SMsg,
    SPub,
    StreamStart,
    Sub,
    decodeServerFrame,
    framed,
)
from streamd.seqframing import (
    Gap as GapFrame,
)
from streamd.seqserver import SeqServerFactory
from streamd.server import StreamServerFactory
from streamd.session import Connections, Session
from streamd.stats import Stats
from streamd.web.context import HTTP_STATUS, WebContext
from streamd.web.site import makeSite

from .support import frames
from .webtools import EPOCH, TCPLikeTransport, events, serverFrames

OTHER_EPOCH = "ffeeddccbbaa9988"
"""
The epoch of a run of the daemon before this one.
"""


@dataclass
class Heard:
    """
    What a client was told, in order.

    @ivar messages: the stream's messages.
    @ivar notices: C{("hello", next)}, C{("gap", Gap)}, C{("own", first,
        last)} and C{("ping",)}, in the order they came among the messages.
    @ivar goodbye: the reason the daemon gave for closing, or the HTTP
        status it refused the request with.
    @ivar refusals: the texts of the subscriptions a client of several
        streams was refused.
    """

    messages: list[bytes] = field(default_factory=list)
    notices: list[tuple[Any, ...]] = field(default_factory=list)
    goodbye: Reason | int | None = None
    refusals: list[str] = field(default_factory=list)

    def gaps(self) -> list[Gap]:
        return [notice[1] for notice in self.notices if notice[0] == "gap"]


class Daemon:
    """
    A hub, its connections and its rules on a L{Clock}, which the clients
    of every transport share.
    """

    def __init__(self, config: ServerConfig | None = None, flow: FlowControl | None = None) -> None:
        self.clock = Clock()
        self.config = config or ServerConfig(heartbeat=None)
        self.stats = Stats()
        self.streams = Streams(self.stats, self.clock, flow or FlowControl())
        self.hub = self.streams.default
        self.hub.history.epoch = bytes.fromhex(EPOCH)
        self.connections = Connections(self.config.maxPartialBytes, self.clock)
        self._port = 40000

    def peer(self) -> IPv4Address:
        self._port += 1
        return IPv4Address("TCP", "127.0.0.1", self._port)

    def publish(self, *messages: bytes) -> None:
        self.hub.publish(list(messages))


class Client:
    """
    One client of one transport; subclasses speak it.
    """

    transport: TCPLikeTransport
    session: Session | None = None
    peer = ""
    gone = False
    publishes = True
    numbered = True
    tokenInBand = True

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def _connect(
        self, factoryClass: type[StreamServerFactory], framing: Framing, token: bytes | None
    ) -> None:
        """
        Connect through a listener's factory, as the reactor would, and
        present C{token} first.
        """
        daemon = self.daemon
        protocol = self._connected(
            factoryClass(
                daemon.hub, daemon.clock, daemon.config, framing, daemon.connections, streams=daemon.streams
            )
        )
        self.session = protocol.session
        if token is not None:
            self.sendToken(token)

    def _connected(self, factory: Any) -> Any:
        """
        A protocol of C{factory} on a new test transport from a new peer.
        """
        peer = self.daemon.peer()
        self.peer = f"127.0.0.1:{peer.port}"
        protocol = factory.buildProtocol(peer)
        self.transport = TCPLikeTransport(peerAddress=peer)
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)
        return protocol

    def heard(self) -> Heard:
        """
        Everything the daemon said to this client so far.
        """
        raise NotImplementedError

    def publish(self, payload: bytes) -> None:
        raise NotImplementedError

    def sendToken(self, token: bytes) -> None:
        raise NotImplementedError

    def answerPings(self) -> None:
        """
        Answer the heartbeats received so far.
        """

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting or self.transport.disconnected

    def lose(self) -> None:
        """
        The connection is gone (as the reactor would tell the protocol,
        once).
        """
        if not self.gone:
            self.gone = True
            self.transport.protocol.connectionLost(Failure(ConnectionDone()))

    def pause(self) -> None:
        """
        The connection stops taking what it is given: it pauses its
        producer (the cursor, or the mux of a client of several streams).
        """
        producer = self.transport.producer
        assert producer is not None
        producer.pauseProducing()

    def resume(self) -> None:
        producer = self.transport.producer
        assert producer is not None
        producer.resumeProducing()


class FramedClient(Client):
    """
    A client of an C{int32} or C{ascii10} listener: frames, its first one
    its token.
    """

    numbered = False
    framing: Framing = INT32

    def __init__(self, daemon: Daemon, token: bytes | None = None) -> None:
        super().__init__(daemon)
        self._connect(StreamServerFactory, self.framing, token)

    def heard(self) -> Heard:
        return Heard(messages=frames(self.transport.value(), self.framing))

    def publish(self, payload: bytes) -> None:
        self.transport.protocol.dataReceived(self.framing.encode(payload))

    def sendToken(self, token: bytes) -> None:
        self.transport.protocol.dataReceived(self.framing.encode(token))

    def announceOversized(self, length: int) -> None:
        self.transport.protocol.dataReceived(self.framing.header(length))


class ASCII10Client(FramedClient):
    framing = ASCII10

    def sendMalformed(self) -> None:
        """
        A header that is not a length.
        """
        self.transport.protocol.dataReceived(b"GET / HTTP/1.1\r\n")


class SeqClient(Client):
    """
    A client of a C{seq} listener: AUTH, HELLO, then PUBs.

    @param start: the HELLO's start, epoch (hex) and position.
    """

    def __init__(
        self, daemon: Daemon, token: bytes | None = None, start: tuple[Start, str, int] | None = None
    ) -> None:
        super().__init__(daemon)
        self._connect(SeqServerFactory, SEQ, token)
        kind, epoch, position = start or (Start.NEWEST, "00" * 8, 0)
        self._send(ClientHello(3, kind, bytes.fromhex(epoch), position))

    def _send(self, frame: Any) -> None:
        self.transport.protocol.dataReceived(framed(frame))

    def heard(self) -> Heard:
        """
        What the daemon said; HELLO's C{next} is the number of the first
        message or gap after it (the number a WebSocket or SSE hello says).
        """
        heard = Heard()
        hello: ServerHello | None = None
        for payload in frames(self.transport.value()):
            frame = decodeServerFrame(payload)
            if hello is not None and isinstance(frame, (Msg, Batch, GapFrame)):
                heard.notices.append(("hello", getattr(frame, "seq", getattr(frame, "first", 0))))
                hello = None
            if isinstance(frame, Msg):
                heard.messages.append(frame.payload)
            elif isinstance(frame, Batch):
                heard.messages.extend(frame.payloads)
            elif isinstance(frame, ServerHello):
                hello = frame
            elif isinstance(frame, GapFrame):
                heard.notices.append(("gap", frame))
            elif isinstance(frame, Ping):
                heard.notices.append(("ping",))
            elif isinstance(frame, Pong):
                heard.notices.append(("pong",))
            elif isinstance(frame, Bye):
                heard.goodbye = Reason(frame.code)
        if hello is not None:
            heard.notices.insert(0, ("hello", hello.newest + 1))
        return heard

    def publish(self, payload: bytes) -> None:
        self._send(Pub(payload))

    def sendToken(self, token: bytes) -> None:
        self._send(Auth(token))

    def answerPings(self) -> None:
        self._send(Pong())

    def sendPing(self) -> None:
        self._send(Ping())

    def announceOversized(self, length: int) -> None:
        self.transport.protocol.dataReceived(pack(">IB", length + 1, 6))

    def sendMalformed(self) -> None:
        """
        A frame with no type.
        """
        self.transport.protocol.dataReceived(pack(">I", 0))


class StreamsClient(SeqClient):
    """
    A C{seq} client of version 4, which subscribes to the listener's
    stream by name (a SUB after a HELLO that asks for none) and publishes
    to it by name (SPUB): the path of a client of several streams.
    """

    def __init__(
        self, daemon: Daemon, token: bytes | None = None, start: tuple[Start, str, int] | None = None
    ) -> None:
        Client.__init__(self, daemon)
        self._connect(SeqServerFactory, SEQ, token)
        kind, epoch, position = start or (Start.NEWEST, "00" * 8, 0)
        self._send(ClientHello(4, Start.NONE, bytes(8), 0))
        self._send(Sub(kind, DEFAULT, bytes.fromhex(epoch), position))

    def heard(self) -> Heard:
        """
        What the daemon said of the stream C{default}: its STREAM's
        C{next} is the hello's.
        """
        heard = Heard()
        numbers = set()
        for payload in frames(self.transport.value()):
            frame = decodeServerFrame(payload)
            if isinstance(frame, StreamStart) and frame.name == DEFAULT:
                numbers.add(frame.number)
                heard.notices.append(("hello", frame.next))
            elif isinstance(frame, SMsg) and frame.stream in numbers:
                heard.messages.append(frame.payload)
            elif isinstance(frame, SBatch) and frame.stream in numbers:
                heard.messages.extend(frame.payloads)
            elif isinstance(frame, SGap) and frame.stream in numbers:
                heard.notices.append(("gap", GapFrame(frame.first, frame.last, frame.reason)))
            elif isinstance(frame, Refused):
                heard.refusals.append(frame.text)
            elif isinstance(frame, Ping):
                heard.notices.append(("ping",))
            elif isinstance(frame, Pong):
                heard.notices.append(("pong",))
            elif isinstance(frame, Bye):
                heard.goodbye = Reason(frame.code)
        return heard

    def publish(self, payload: bytes) -> None:
        self._send(SPub(DEFAULT, payload))


class BoundClient(FramedClient):
    """
    A client of an C{int32} listener bound to the stream C{stream}
    (C{--listen ...:stream=NAME}): it reads and publishes there.
    """

    def __init__(self, daemon: Daemon, stream: str, token: bytes | None = None) -> None:
        Client.__init__(self, daemon)
        factory = StreamServerFactory(
            daemon.streams.open(stream),
            daemon.clock,
            daemon.config,
            INT32,
            daemon.connections,
            streams=daemon.streams,
        )
        self.session = self._connected(factory).session
        if token is not None:
            self.sendToken(token)


class SubscriberClient(SeqClient):
    """
    A C{seq} client of version 4 that subscribes to the names and
    patterns C{subjects} (and later L{subscribe}s), and publishes to any
    stream by name (L{publishTo}).
    """

    def __init__(self, daemon: Daemon, subjects: tuple[str, ...] = (), token: bytes | None = None) -> None:
        Client.__init__(self, daemon)
        self._connect(SeqServerFactory, SEQ, token)
        self._send(ClientHello(4, Start.NONE, bytes(8), 0))
        for subject in subjects:
            self.subscribe(subject)

    def subscribe(self, subject: str) -> None:
        self._send(Sub(Start.NEWEST, subject))

    def publishTo(self, stream: str, payload: bytes) -> None:
        self._send(SPub(stream, payload))

    def received(self) -> dict[str, list[bytes]]:
        """
        The messages received, by stream name.
        """
        names: dict[int, str] = {}
        received: dict[str, list[bytes]] = {}
        for payload in frames(self.transport.value()):
            frame = decodeServerFrame(payload)
            if isinstance(frame, StreamStart):
                names[frame.number] = frame.name
                received.setdefault(frame.name, [])
            elif isinstance(frame, SMsg):
                received[names[frame.stream]].append(frame.payload)
            elif isinstance(frame, SBatch):
                received[names[frame.stream]].extend(frame.payloads)
        return received

    def heard(self) -> Heard:
        """
        What the daemon refused, and its goodbye (the messages are
        L{received}'s).
        """
        heard = Heard()
        for payload in frames(self.transport.value()):
            frame = decodeServerFrame(payload)
            if isinstance(frame, Refused):
                heard.refusals.append(f"{frame.subject}: {frame.text}")
            elif isinstance(frame, Bye):
                heard.goodbye = Reason(frame.code)
        return heard


class _HTTPClient(Client):
    """
    A client of the C{--http} site, through its HTTP channel.
    """

    def _request(self, path: bytes, headers: dict[str, str]) -> None:
        daemon = self.daemon
        context = WebContext(daemon.hub, daemon.clock, daemon.config, daemon.connections, "tcp:8080")
        channel = self._connected(makeSite(context))
        lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: localhost:8080\r\n%s\r\n" % (path, lines.encode()))
        # The session it was admitted with, if any.
        for session in daemon.connections:
            if session.peer == self.peer:
                self.session = session

    def _status(self) -> tuple[int, bytes]:
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        return int(head.split(b" ", 2)[1]), body


def _query(start: tuple[Start, str, int] | None) -> str:
    if start is None:
        return ""
    kind, epoch, position = start
    assert kind == Start.RESUME
    return f"?last={position}&epoch={epoch}"


class WebSocketClient(_HTTPClient):
    """
    A WebSocket client at C{/ws}: its token as C{Authorization: Bearer}, or
    its first message when it is sent in band.
    """

    tokenInBand = False

    @property
    def closed(self) -> bool:
        """
        Whether the daemon closed the connection, or began to with a close
        frame.
        """
        status, body = self._status()
        closing = status == 101 and any(opcode == 8 for opcode, _ in serverFrames(body))
        return closing or super().closed

    def __init__(
        self,
        daemon: Daemon,
        token: bytes | None = None,
        start: tuple[Start, str, int] | None = None,
        origin: str | None = None,
        inBand: bool = False,
        query: str | None = None,
    ) -> None:
        super().__init__(daemon)
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        if token is not None and not inBand:
            headers["Authorization"] = f"Bearer {token.decode()}"
        if origin is not None:
            headers["Origin"] = origin
        self._request(b"/ws" + (query if query is not None else _query(start)).encode(), headers)
        if token is not None and inBand:
            self.sendToken(token)

    def heard(self) -> Heard:
        status, body = self._status()
        heard = Heard()
        if status != 101:
            heard.goodbye = status
            return heard
        for opcode, payload in serverFrames(body):
            if opcode in (1, 2) and payload[:1] != b"\x1e":
                heard.messages.append(payload)
            elif opcode == 1:
                control = json.loads(payload[1:])
                kind = control["type"]
                if kind == "hello":
                    heard.notices.append(("hello", control["next"]))
                elif kind == "gap":
                    reason = {"evicted": 1, "restarted": 2, "cluster": 3}[control["reason"]]
                    heard.notices.append(("gap", Gap(control["first"], control["last"], reason)))
                elif kind == "own":
                    heard.notices.append(("own", control["first"], control["last"]))
                elif kind == "bye":
                    heard.goodbye = Reason(control["code"])
            elif opcode == 9:
                heard.notices.append(("ping",))
            elif opcode == 10:
                heard.notices.append(("pong",))
            elif opcode == 8 and heard.goodbye is not None:
                code = int.from_bytes(payload[:2], "big")
                expected = 1012 if heard.goodbye is Reason.SHUTDOWN else 4000 + heard.goodbye.value  # type: ignore[union-attr]
                assert code == expected, f"close code {code} after bye {heard.goodbye}"
        return heard

    def _frame(self, opcode: int, payload: bytes) -> None:
        # Masked with a zero mask, so the payload goes as it is.
        length = len(payload)
        head = (
            bytes((0x80 | opcode, 0x80 | length))
            if length < 126
            else pack(">BBH", 0x80 | opcode, 0xFE, length)
        )
        self.transport.protocol.dataReceived(head + b"\0\0\0\0" + payload)

    def publish(self, payload: bytes) -> None:
        self._frame(1, payload)

    def sendToken(self, token: bytes) -> None:
        self._frame(1, token)

    def answerPings(self) -> None:
        self._frame(10, b"")

    def sendPing(self) -> None:
        self._frame(9, b"p")

    def announceOversized(self, length: int) -> None:
        self.transport.protocol.dataReceived(pack(">BBH", 0x82, 0xFE, length) + b"\0\0\0\0")

    def sendMalformed(self) -> None:
        """
        A frame with a reserved bit set, which no extension was agreed for.
        """
        self.transport.protocol.dataReceived(bytes((0xC1, 0x81)) + b"\0\0\0\0x")


class EventsClient(_HTTPClient):
    """
    A Server-Sent Events client at C{/events}: it cannot publish, and
    presents its token with the request.
    """

    publishes = False
    tokenInBand = False

    @property
    def closed(self) -> bool:
        """
        Whether the daemon refused the request, or ended the stream (its
        last chunk, and its connection).
        """
        status, _ = self._status()
        return status != 200 or self.transport.value().endswith(b"\r\n0\r\n\r\n") or super().closed

    def __init__(
        self,
        daemon: Daemon,
        token: bytes | None = None,
        start: tuple[Start, str, int] | None = None,
        origin: str | None = None,
        query: str | None = None,
    ) -> None:
        super().__init__(daemon)
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token.decode()}"
        if origin is not None:
            headers["Origin"] = origin
        if start is not None and query is None:
            headers["Last-Event-ID"] = f"{start[1]}-{start[2]}"
        self._request(b"/events" + (query or "").encode(), headers)

    def heard(self) -> Heard:
        status, body = self._status()
        heard = Heard()
        if status != 200:
            heard.goodbye = status
            return heard
        text = _dechunked(body).decode()
        heard.notices.extend(("ping",) for _ in range(text.count(": keepalive\n\n")))
        for event in events(text):
            kind = event.get("event")
            if kind is None:
                heard.messages.append(event["data"].encode())
            elif kind == "hello":
                heard.notices.append(("hello", json.loads(event["data"])["next"]))
            elif kind == "gap":
                control = json.loads(event["data"])
                reason = {"evicted": 1, "restarted": 2, "cluster": 3}[control["reason"]]
                heard.notices.append(("gap", Gap(control["first"], control["last"], reason)))
            elif kind == "bye":
                heard.goodbye = Reason(json.loads(event["data"])["code"])
        return heard


def _dechunked(body: bytes) -> bytes:
    """
    The data of an HTTP/1.1 chunked body, as far as it came.
    """
    data = b""
    while body:
        size, _, rest = body.partition(b"\r\n")
        length = int(size, 16)
        if length == 0:
            break
        data += rest[:length]
        body = rest[length + 2 :]
    return data


def refusal(reason: Reason) -> int:
    """
    The HTTP status a web client is refused with for C{reason}.
    """
    return HTTP_STATUS.get(reason, 503)


class _StreamsSiteClient(_HTTPClient):
    """
    A client of several streams of the C{--http} site, as the daemon serves
    it (its context knows the daemon's streams), through its HTTP channel:
    of the stream C{default} at C{/ws/default} or C{/events/default}, which
    it resumes with C{?after=default/EPOCH-SEQ}.
    """

    def __init__(
        self,
        daemon: Daemon,
        start: tuple[Start, str, int] | None = None,
        query: str | None = None,
        **settings: Any,
    ) -> None:
        after = "" if start is None else f"?after={DEFAULT}/{start[1]}-{start[2]}"
        super().__init__(
            daemon, start=None, query=f"/{DEFAULT}{after if query is None else query}", **settings
        )

    def _request(self, path: bytes, headers: dict[str, str]) -> None:
        daemon = self.daemon
        context = WebContext(
            daemon.hub, daemon.clock, daemon.config, daemon.connections, "tcp:8080", streams=daemon.streams
        )
        channel = self._connected(makeSite(context))
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items()).encode()
        channel.dataReceived(b"GET %s HTTP/1.1\r\nHost: localhost:8080\r\n%s\r\n" % (path, head))
        self.session = next((s for s in daemon.connections if s.peer == self.peer), None)

    @staticmethod
    def note(heard: Heard, kind: str, message: dict[str, Any]) -> None:
        """
        What a client of several streams is told of C{default}, in the
        vocabulary of L{Heard}: the web's messages are the same on both
        transports (WebSocket controls, SSE events).
        """
        if message.get("stream", DEFAULT) != DEFAULT:
            return
        if kind == "stream":
            heard.notices.append(("hello", message["next"]))
        elif kind == "gap":
            reason = GapReason[message["reason"].upper()]
            heard.notices.append(("gap", Gap(message["first"], message["last"], reason)))
        elif kind == "own":
            heard.notices.append(("own", message["first"], message["last"]))
        elif kind == "refused":
            heard.refusals.append(message["error"])
        elif kind == "bye":
            heard.goodbye = Reason(message["code"])


class WebSocketStreamsClient(_StreamsSiteClient, WebSocketClient):
    """
    A WebSocket client of several streams at C{/ws/default}: its messages
    go to C{default}; the stream's messages come after C{in} controls, its
    start is told by C{stream}.
    """

    def heard(self) -> Heard:
        status, body = self._status()
        if status != 101:
            return Heard(goodbye=status)
        heard = Heard()
        for opcode, payload in serverFrames(body):
            if opcode == 9:
                heard.notices.append(("ping",))
            elif opcode == 10:
                heard.notices.append(("pong",))
            elif opcode == 1 and payload.startswith(b"\x1e"):
                message = json.loads(payload[1:])
                self.note(heard, message["type"], message)
            elif opcode in (1, 2):
                heard.messages.append(payload)
        return heard


class EventsStreamsClient(_StreamsSiteClient, EventsClient):
    """
    A Server-Sent Events client of several streams at C{/events/default}:
    each event's id is C{default/EPOCH-SEQ}.
    """

    def heard(self) -> Heard:
        status, body = self._status()
        if status != 200:
            return Heard(goodbye=status)
        text = _dechunked(body).decode()
        heard = Heard(notices=[("ping",)] * text.count(": keepalive\n\n"))
        prefix = f"{DEFAULT}/{self.daemon.hub.history.epoch.hex()}-"
        for event in events(text):
            kind = event.get("event")
            if kind is None and event["id"].startswith(prefix):
                heard.messages.append(event["data"].encode())
            elif kind is not None and kind != "hello":
                self.note(heard, kind, json.loads(event["data"]))
        return heard
