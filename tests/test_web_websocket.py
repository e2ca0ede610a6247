"""
Tests for L{streamd.web.websocket}'s protocol on a test transport: the
handshake through autobahn, the stream, publishing, the rules, and a slow
consumer cut as a TCP one is.
"""

from __future__ import annotations

import socket
import sys
from struct import pack

from twisted.internet.address import IPv4Address
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactor
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from streamd.auth import AccessPolicy
from streamd.config import FlowControl, ServerConfig
from streamd.fanout.mux import SocketMux
from streamd.fanout.socketcursor import SocketCursor
from streamd.reads import READ_SIZE
from streamd.reasons import Reason
from streamd.session import MAX_UNANSWERED_PINGS, MESSAGE_TIMEOUT
from streamd.web.context import WebContext
from streamd.web.framing import SHUTDOWN_RETRY_MS
from streamd.web.websocket import (
    MAX_FRAGMENTS,
    MAX_PONGS_PER_READ,
    StreamWebSocketFactory,
    StreamWebSocketProtocol,
)
from tests.webtools import (
    EPOCH,
    HANDSHAKE,
    TCPLikeTransport,
    cancelBatchedTimers,
    controls,
    serverFrames,
    tokenConfig,
    webContext,
)


def clientFrame(payload: bytes, opcode: int = 1, fin: bool = True) -> bytes:
    """
    A masked client frame (with a zero mask, so the payload is as is).
    """
    size = len(payload)
    if size < 126:
        length = bytes((0x80 | size,))
    elif size < 0x10000:
        length = b"\xfe" + pack(">H", size)
    else:
        length = b"\xff" + pack(">Q", size)
    return bytes((0x80 * fin | opcode,)) + length + b"\0\0\0\0" + payload


class _Client:
    """
    One WebSocket connection to a protocol on a test transport.
    """

    def __init__(
        self, context: WebContext, query: bytes = b"", headers: bytes = b"", transport: TCPLikeTransport | None = None
    ) -> None:
        factory = StreamWebSocketFactory(context)
        # autobahn's pings use the global reactor: not in these tests.
        factory.setProtocolOptions(autoPingInterval=0)
        self.protocol: StreamWebSocketProtocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        self.transport = transport or TCPLikeTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000))
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(HANDSHAKE % (query, headers))
        self.status, _, self._rest = self.transport.value().partition(b"\r\n\r\n")

    def frames(self) -> list[tuple[int, bytes]]:
        """
        Every frame the daemon sent so far.
        """
        return serverFrames(self.transport.value().partition(b"\r\n\r\n")[2])

    def messages(self) -> list[tuple[int, bytes]]:
        """
        The stream messages among L{frames}.
        """
        return [(op, p) for op, p in self.frames() if op in (1, 2) and p[:1] != b"\x1e"]

    def send(self, payload: bytes, opcode: int = 1, fin: bool = True) -> None:
        self.protocol.dataReceived(clientFrame(payload, opcode, fin))

    def lose(self) -> None:
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))


class WebSocketTests(SynchronousTestCase):
    """
    A WebSocket subscriber and publisher.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_helloAndStream(self) -> None:
        """
        After the handshake the client gets C{hello} (the epoch and the next
        sequence number), then each message, text or binary.
        """
        context = webContext()
        context.hub.publish([b"before"])
        client = _Client(context)
        self.assertIn(b"101", client.status.split(b"\r\n")[0])
        context.hub.publish([b"text", b"\xffbin"])
        self.assertEqual(controls(client.frames()), [{"type": "hello", "epoch": EPOCH, "next": 2}])
        self.assertEqual(client.messages(), [(1, b"text"), (2, b"\xffbin")])
        self.assertEqual(len(context.connections), 1)
        self.assertEqual(context.hub.stats.messagesOut, 2)

    def test_resume(self) -> None:
        """
        C{?last=SEQ&epoch=E} starts the stream after message SEQ.
        """
        context = webContext()
        context.hub.publish([b"1", b"2", b"3"])
        client = _Client(context, f"?last=1&epoch={EPOCH}".encode())
        self.assertEqual(controls(client.frames())[0]["next"], 2)
        self.assertEqual(client.messages(), [(1, b"2"), (1, b"3")])

    def test_badPosition(self) -> None:
        """
        A C{?last=} that is not a number, or that no sequence number has
        (digits that are not ASCII, more than 20), refuses the handshake
        with a 400 that says so, counted under C{bad_request}.
        """
        for last in (b"x", b"%C2%B2", b"9" * 5000):
            context = webContext()
            client = _Client(context, b"?last=%s&epoch=%s" % (last, EPOCH.encode()))
            self.assertTrue(client.status.startswith(b"HTTP/1.1 400 asked for last='"), client.status)
            self.assertIn(b", which is not a number of at most 20 digits", client.status)
            self.assertEqual(context.hub.stats.disconnects[Reason.BAD_REQUEST], 1)

    def test_publish(self) -> None:
        """
        What the client sends is published like a TCP client's message, to
        everyone but itself, and counted.
        """
        context = webContext()
        sender, receiver = _Client(context), _Client(context)
        sender.send(b"from the page")
        sender.send(b"\xff\x02", opcode=2)
        self.assertEqual(receiver.messages(), [(1, b"from the page"), (2, b"\xff\x02")])
        self.assertEqual(sender.messages(), [])
        self.assertEqual((context.hub.stats.messagesIn, sender.protocol.session.messagesIn), (2, 2))

    def test_readOnly(self) -> None:
        """
        With C{--read-only}, a message gets C{bye} with the reason, and the
        close code 4000 + the reason's code; nothing is published.
        """
        context = webContext(ServerConfig(access=AccessPolicy(readOnly=True)))
        client = _Client(context)
        client.send(b"no")
        self.assertEqual(
            controls(client.frames())[-1],
            {"type": "bye", "reason": "read_only", "code": 8, "reconnect": False},
        )
        close = [payload for opcode, payload in client.frames() if opcode == 8]
        self.assertEqual(close[0][:2], (4008).to_bytes(2, "big"))
        self.assertEqual(context.hub.history.nextSequence, 1)
        self.assertEqual(context.hub.stats.disconnects[Reason.READ_ONLY], 1)

    def test_tokenAsFirstMessage(self) -> None:
        """
        With C{--auth-token-file} and no C{Authorization} header, the first
        message is the token; nothing is sent before it.
        """
        context = webContext(tokenConfig(self))
        client = _Client(context)
        context.hub.publish([b"secret"])
        self.assertEqual(client.frames(), [])
        client.send(b"sesame")
        context.hub.publish([b"after"])
        self.assertEqual(client.messages(), [(1, b"after")])

    def test_wrongTokenMessage(self) -> None:
        """
        A wrong first message closes with C{auth_failed}.
        """
        context = webContext(tokenConfig(self))
        client = _Client(context)
        client.send(b"guess")
        self.assertEqual(controls(client.frames())[-1]["reason"], "auth_failed")
        self.assertEqual(context.hub.stats.disconnects[Reason.AUTH_FAILED], 1)

    def test_tokenTimeout(self) -> None:
        """
        A client that sends no token within --auth-timeout is closed.
        """
        context = webContext(tokenConfig(self))
        client = _Client(context)
        context.clock.advance(context.config.authTimeout)
        self.assertEqual(controls(client.frames())[-1]["reason"], "auth_timeout")

    def test_bearer(self) -> None:
        """
        An C{Authorization: Bearer} header with the token opens the stream
        at once; a wrong one is refused with 401 before the upgrade.
        """
        context = webContext(tokenConfig(self))
        good = _Client(context, headers=b"Authorization: Bearer sesame\r\n")
        context.hub.publish([b"x"])
        self.assertEqual(good.messages(), [(1, b"x")])
        bad = _Client(context, headers=b"Authorization: Bearer guess\r\n")
        self.assertIn(b"401", bad.status.split(b"\r\n")[0])

    def test_maxClients(self) -> None:
        """
        Over --max-clients, counting every kind of connection, the upgrade
        is refused with 503 and counted.
        """
        context = webContext(ServerConfig(maxClients=1))
        _Client(context)
        refused = _Client(context)
        self.assertIn(b"503", refused.status.split(b"\r\n")[0])
        self.assertEqual(context.hub.stats.disconnects[Reason.MAX_CLIENTS], 1)

    def test_slowConsumerCut(self) -> None:
        """
        A WebSocket client whose connection is full falls behind and is cut
        by --max-pending, exactly as a TCP client is; its connection leaves
        the daemon's set.
        """
        context = webContext(flow=FlowControl(maxBehind=100))
        client = _Client(context)
        cursor = client.protocol.session.cursor
        assert cursor is not None
        cursor.pauseProducing()
        for _ in range(10):
            context.hub.publish([b"x" * 50])
        context.clock.advance(0.1)
        self.assertTrue(cursor.closed)
        self.assertEqual(context.hub.stats.disconnects[Reason.MAX_PENDING], 1)
        self.assertEqual(context.hub.subscribers, ())
        client.lose()
        self.assertEqual(len(context.connections), 0)

    def test_oversizedMessage(self) -> None:
        """
        A message over --max-message-size is counted with the oversized
        frames of TCP clients (C{oversized_frame} in /metrics), is not
        published, and gets C{bye} with its reason and a close with code
        4004; the rest of the message is not held.  (This also checks that
        autobahn still calls the hook streamd overrides.)
        """
        context = webContext(ServerConfig(maxMessageSize=100))
        client = _Client(context)
        client.send(b"x" * 100)
        self.assertEqual(context.hub.history.nextSequence, 2)
        header = bytes((0x81, 0x80 | 126)) + (1000).to_bytes(2, "big") + b"\0\0\0\0"
        client.protocol.dataReceived(header + b"y" * 500)
        self.assertEqual(client.protocol.frame_data, [])
        client.protocol.dataReceived(b"y" * 500)
        self.assertEqual(context.hub.stats.disconnects[Reason.OVERSIZED_FRAME], 1)
        self.assertEqual(context.hub.history.nextSequence, 2)
        self.assertEqual(
            controls(client.frames())[-1],
            {"type": "bye", "reason": "oversized_frame", "code": 4, "reconnect": False},
        )
        close = [payload for opcode, payload in client.frames() if opcode == 8]
        self.assertEqual(close[0][:2], (4004).to_bytes(2, "big"))

    def test_close(self) -> None:
        """
        At shutdown the client gets C{bye} with C{shutdown} and a wait
        before it reconnects (within L{SHUTDOWN_RETRY_MS}), and a close
        frame with code 1012 (service restart), which autobahn's own
        C{sendClose} would refuse.
        """
        context = webContext()
        client = _Client(context)
        client.protocol.session.close()
        bye = controls(client.frames())[-1]
        self.assertEqual((bye["reason"], bye["reconnect"]), ("shutdown", True))
        low, high = SHUTDOWN_RETRY_MS
        self.assertTrue(low <= bye["retry"] <= high, bye)
        close = [payload for opcode, payload in client.frames() if opcode == 8]
        self.assertEqual(close[0][:2], (1012).to_bytes(2, "big"))

    def test_closeAfterBacklog(self) -> None:
        """
        At shutdown a client that is behind gets what was published before,
        then C{bye}, then the close frame: its backlog is not dropped.
        """
        context = webContext()
        client = _Client(context)
        cursor = client.protocol.session.cursor
        assert cursor is not None
        cursor.pauseProducing()
        context.hub.publish([b"one", b"two"])
        context.hub.publish([b"three"])
        client.protocol.session.close()
        self.assertEqual(client.messages(), [])
        self.assertNotIn(8, [opcode for opcode, _ in client.frames()])
        cursor.resumeProducing()
        frames = client.frames()
        self.assertEqual(client.messages(), [(1, b"one"), (1, b"two"), (1, b"three")])
        self.assertEqual(controls(frames[-2:-1])[0]["reason"], "shutdown")
        self.assertEqual((frames[-1][0], frames[-1][1][:2]), (8, (1012).to_bytes(2, "big")))
        self.assertTrue(cursor.closed)


    def test_closeInFrameBuffered(self) -> None:
        """
        On a transport that buffers (TLS), a client that closes while the
        daemon has handed over only part of a large frame gets the rest of
        that frame, then the answer to its close.
        """
        context = webContext()
        client = _Client(context, transport=_FillingTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 5000)))
        context.hub.publish([b"z" * 300_000])
        self.assertLess(len(client.transport.value()), 300_000)
        client.send((1000).to_bytes(2, "big"), opcode=8)
        self.assertEqual(client.frames()[1:], [(1, b"z" * 300_000), (8, (1000).to_bytes(2, "big"))])


class _FillingTransport(TCPLikeTransport):
    """
    A transport whose buffer is full (it pauses its producer) once it holds
    more than 100,000 bytes.
    """

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.value()) > 100_000:
            self.producer.pauseProducing()


class FragmentTests(SynchronousTestCase):
    """
    A message sent in pieces (WebSocket fragments): held once, counted with
    every client's unfinished frames, and timed.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_heldOnce(self) -> None:
        """
        A message of 2-byte fragments, as many as L{MAX_FRAGMENTS} allows,
        is held in one buffer of at most about 1.25 times its bytes
        (autobahn's lists of pieces are not kept), and counted in
        C{--max-partial-bytes} until it is whole, then published.
        """
        context = webContext()
        sender, receiver = _Client(context), _Client(context)
        sender.send(b"ab", opcode=2, fin=False)
        for _ in range(MAX_FRAGMENTS - 2):
            sender.send(b"cd", opcode=0, fin=False)
        held = sender.protocol._message
        assert held is not None
        size = 2 * (MAX_FRAGMENTS - 1)
        self.assertLessEqual(sys.getsizeof(held), 1.25 * size + 100)
        self.assertEqual(sender.protocol.message_data, [])
        self.assertEqual(context.connections.partial.held, size)
        sender.send(b"", opcode=0)
        self.assertEqual(context.connections.partial.held, 0)
        self.assertEqual(receiver.messages(), [(1, b"ab" + b"cd" * (MAX_FRAGMENTS - 2))])

    def test_fragmentFlood(self) -> None:
        """
        A message in more than L{MAX_FRAGMENTS} frames (a flood of empty
        fragments, each costing the daemon time and carrying nothing) is
        cut (C{bad_frame}), what it held let go, and nothing published.
        """
        context = webContext()
        sender, receiver = _Client(context), _Client(context)
        sender.protocol.dataReceived(clientFrame(b"", opcode=2, fin=False) * (MAX_FRAGMENTS + 1))
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 1)
        self.assertEqual(context.connections.partial.held, 0)
        self.assertEqual(receiver.messages(), [])

    def test_fragmentsOfLargerMessages(self) -> None:
        """
        With a larger C{--max-message-size}, a message may come in a piece
        per KiB of it: 4 MiB allows 4,096 pieces, and cuts at one more.
        """
        context = webContext(ServerConfig(maxMessageSize=4 << 20))
        sender, receiver = _Client(context), _Client(context)
        pieces = 4096

        def message(count: int) -> bytes:
            first = clientFrame(b"x", opcode=2, fin=False)
            return first + clientFrame(b"x", opcode=0, fin=False) * (count - 2) + clientFrame(b"x", opcode=0)

        sender.protocol.dataReceived(message(pieces))
        self.assertEqual(receiver.messages(), [(1, b"x" * pieces)])
        sender.protocol.dataReceived(message(pieces + 1))
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 1)
        self.assertEqual(len(receiver.messages()), 1)

    def test_sharedBudget(self) -> None:
        """
        Unfinished messages count against the same C{--max-partial-bytes}
        as all clients' partial frames: the client that takes it over is
        cut (C{max_partial}), and what it held is let go.
        """
        context = webContext(ServerConfig(maxMessageSize=1000, maxPartialBytes=2000))
        first, second, third = _Client(context), _Client(context), _Client(context)
        for client in (first, second):
            client.send(b"x" * 100, opcode=2, fin=False)
            for _ in range(8):
                client.send(b"x" * 100, opcode=0, fin=False)
        third.send(b"y" * 100, opcode=2, fin=False)
        third.send(b"y" * 101, opcode=0, fin=False)
        self.assertEqual(controls(third.frames())[-1]["reason"], "max_partial")
        self.assertEqual(context.hub.stats.disconnects[Reason.MAX_PARTIAL], 1)
        self.assertEqual(context.connections.partial.held, 1800)
        first.lose()
        self.assertEqual(context.connections.partial.held, 900)

    def test_timedOut(self) -> None:
        """
        A message whose pieces keep coming, but which is not finished within
        L{MESSAGE_TIMEOUT}, cuts its sender (C{slow_message}), with no
        token or idle timeout set.
        """
        context = webContext(ServerConfig(heartbeat=None))
        client = _Client(context)
        client.send(b"", opcode=1, fin=False)
        for _ in range(int(MESSAGE_TIMEOUT / 10) - 1):
            context.clock.advance(10)
            client.send(b"", opcode=0, fin=False)
        self.assertEqual(context.hub.stats.disconnects[Reason.SLOW_MESSAGE], 0)
        context.clock.advance(10)
        self.assertEqual(controls(client.frames())[-1]["reason"], "slow_message")
        self.assertEqual(context.hub.stats.disconnects[Reason.SLOW_MESSAGE], 1)


class PingTests(SynchronousTestCase):
    """
    Pings from a client: answered in order with the stream, and bounded for
    a client that does not read.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_answered(self) -> None:
        """
        A client that takes what it is sent gets a pong with each ping's
        payload, however many it sends.
        """
        context = webContext()
        client = _Client(context)
        for n in range(100):
            client.send(b"%d" % n, opcode=9)
        pongs = [payload for opcode, payload in client.frames() if opcode == 10]
        self.assertEqual(pongs, [b"%d" % n for n in range(100)])
        self.assertFalse(client.transport.disconnecting)

    def test_lastOfRead(self) -> None:
        """
        Of the pings that come in one read, the last alone is answered, once
        the read is handled (RFC 6455 lets a pong answer only the latest).
        """
        context = webContext()
        client = _Client(context)
        client.protocol.dataReceived(b"".join(clientFrame(b"%d" % n, opcode=9) for n in range(5)))
        pongs = [payload for opcode, payload in client.frames() if opcode == 10]
        self.assertEqual(pongs, [b"4"])
        self.assertFalse(client.transport.disconnecting)

    def test_floodInOneRead(self) -> None:
        """
        A client that reads what it is sent but sends more than
        L{MAX_UNANSWERED_PINGS} pings in one read is cut (C{ping_flood}),
        and gets no pong for that read's: each ping would cost the daemon
        time; L{MAX_UNANSWERED_PINGS} in a read get one pong.
        """
        context = webContext()
        client = _Client(context)
        client.protocol.dataReceived(clientFrame(b"x", opcode=9) * MAX_UNANSWERED_PINGS)
        self.assertEqual(context.hub.stats.disconnects[Reason.PING_FLOOD], 0)
        client.protocol.dataReceived(clientFrame(b"x", opcode=9) * (MAX_UNANSWERED_PINGS + 1))
        self.assertEqual(context.hub.stats.disconnects[Reason.PING_FLOOD], 1)
        self.assertEqual([payload for opcode, payload in client.frames() if opcode == 10], [b"x"])

    def test_pongFlood(self) -> None:
        """
        More than L{MAX_PONGS_PER_READ} pongs in one read (the daemon asks
        for one per heartbeat) is a flood of frames that carry nothing: the
        client is cut (C{bad_frame}), and nothing more it sent is parsed.
        """
        context = webContext()
        client, receiver = _Client(context), _Client(context)
        client.protocol.dataReceived(clientFrame(b"", opcode=10) * MAX_PONGS_PER_READ + clientFrame(b"one"))
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 0)
        client.protocol.dataReceived(clientFrame(b"", opcode=10) * (MAX_PONGS_PER_READ + 1) + clientFrame(b"two"))
        client.protocol.dataReceived(clientFrame(b"three"))
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 1)
        self.assertEqual(receiver.messages(), [(1, b"one")])

    def test_flood(self) -> None:
        """
        A client that does not take what it is sent gets no pongs piled up
        for it; past L{MAX_UNANSWERED_PINGS} pings it is cut
        (C{ping_flood}).
        """
        context = webContext()
        client = _Client(context)
        cursor = client.protocol.session.cursor
        assert cursor is not None
        cursor.pauseProducing()
        before = len(client.transport.value())
        for _ in range(MAX_UNANSWERED_PINGS):
            client.send(b"x" * 125, opcode=9)
        self.assertEqual(len(client.transport.value()), before)
        self.assertEqual(context.hub.stats.disconnects[Reason.PING_FLOOD], 0)
        client.send(b"x" * 125, opcode=9)
        self.assertEqual(context.hub.stats.disconnects[Reason.PING_FLOOD], 1)


class _PeerConnection(Connection):
    """
    A TCP transport on one end of a socket pair, with the peer a TCP
    listener's connection has.
    """

    def getPeer(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 5000)


class _SocketClient(_Client):
    """
    One WebSocket connection to a protocol on a real socket with 4 KiB
    buffers, the test playing the reactor (as in
    C{tests/test_socketcursor.py}): what the daemon sends is read from the
    far end, in the order the kernel got it.
    """

    def __init__(self, case: SynchronousTestCase, context: WebContext, path: bytes = b"") -> None:
        factory = StreamWebSocketFactory(context)
        factory.setProtocolOptions(autoPingInterval=0)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        near, self.far = socket.socketpair()
        near.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.far.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        case.addCleanup(near.close)
        case.addCleanup(self.far.close)
        near.setblocking(False)
        self.far.setblocking(False)
        self.reactor = MemoryReactor()
        self.transport = _PeerConnection(near, self.protocol, self.reactor)  # type: ignore[assignment]
        self.transport.connected = True
        self.received = b""
        self.protocol.makeConnection(self.transport)
        self.protocol.dataReceived(HANDSHAKE % (path, b""))

    def read(self) -> bytes:
        """
        Everything the far end got so far: its kernel's reads, the
        transport writing whenever it watches for writability, until
        nothing more comes.
        """
        transport: Connection = self.transport  # type: ignore[assignment]
        for _ in range(100_000):
            try:
                chunk = self.far.recv(1 << 16)
            except BlockingIOError:
                chunk = b""
            self.received += chunk
            if transport.connected and transport in self.reactor.getWriters():
                why = transport.doWrite()
                if why is not None:
                    transport.connectionLost(Failure(why))
            elif not chunk:
                break
        return self.received

    def readSome(self) -> None:
        """
        Let the transport write once, and the far end read what came.
        """
        transport: Connection = self.transport  # type: ignore[assignment]
        if transport in self.reactor.getWriters():
            transport.doWrite()
        self.received += self.far.recv(1 << 16)

    def frames(self) -> list[tuple[int, bytes]]:
        answer, _, frames = self.read().partition(b"\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 101 "), answer[:40]
        return serverFrames(frames)


class SocketTests(SynchronousTestCase):
    """
    On a TCP connection a WebSocket client's stream goes straight to its
    socket, as a TCP client's does: after the handshake's answer, and with
    every frame whole whatever autobahn writes meanwhile.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def publishBacklog(self, context: WebContext) -> list[bytes]:
        """
        Publish far more than the socket holds, in messages bigger than it.
        """
        messages = [bytes([65 + i % 26]) * (20_000 + i) for i in range(40)]
        for message in messages:
            context.hub.publish([message])
        return messages

    def test_answerFirst(self) -> None:
        """
        The handshake's answer, bigger than the socket takes at once with
        the stream behind it, arrives first and whole; then C{hello} and
        the stream, sent by a L{SocketCursor} that never fills Twisted's
        buffer.
        """
        context = webContext()
        client = _SocketClient(self, context)
        session = client.protocol.session
        assert session is not None
        self.assertIsInstance(session.cursor, SocketCursor)
        messages = self.publishBacklog(context)
        frames = client.frames()
        self.assertEqual(controls(frames[:1]), [{"type": "hello", "epoch": EPOCH, "next": 1}])
        self.assertEqual([payload for _, payload in frames[1:]], messages)
        self.assertTrue(session.cursor.live)
        context.hub.publish([b"live"])
        self.assertEqual(client.frames()[-1], (1, b"live"))
        self.assertEqual(client.transport.dataBuffer, b"")

    def test_bigReadsWhileFull(self) -> None:
        """
        A WebSocket client's connection asks for about L{READ_SIZE} after a
        read of Twisted's 64 KiB or more, and for 64 KiB after a smaller
        one, as a TCP publisher's does.
        """
        client = _SocketClient(self, webContext())
        self.assertEqual(client.protocol.readLimit, READ_SIZE)
        frame = clientFrame(b"x" * 100)
        asked = []
        for frames in (600, 700, 1):
            client.protocol.dataReceived(frame * frames)
            asked.append(client.transport.bufferSize)
        # 106 bytes a frame: 63,600 bytes, then 74,200, then 106.
        self.assertEqual(len(frame), 106)
        self.assertEqual(asked, [64 * 1024, READ_SIZE, 64 * 1024])

    def test_closeInBacklog(self) -> None:
        """
        A client that closes while far behind gets the frame begun whole,
        then the answer to its close, and nothing after it.
        """
        context = webContext()
        client = _SocketClient(self, context)
        messages = self.publishBacklog(context)
        client.readSome()
        client.readSome()
        client.send((1000).to_bytes(2, "big"), opcode=8)
        frames = client.frames()
        self.assertEqual(frames[-1], (8, (1000).to_bytes(2, "big")))
        sent = [payload for _, payload in frames[1:-1]]
        self.assertEqual(sent, messages[: len(sent)])
        self.assertLess(len(sent), len(messages))
        self.assertFalse(client.transport.connected)

    def test_pongsInOrder(self) -> None:
        """
        A ping is answered in order with the stream, on the socket.
        """
        context = webContext()
        client = _SocketClient(self, context)
        client.read()
        context.hub.publish([b"before"])
        client.send(b"p", opcode=9)
        context.hub.publish([b"after"])
        self.assertEqual(client.frames()[1:], [(1, b"before"), (10, b"p"), (1, b"after")])

    def test_severalStreams(self) -> None:
        """
        A client of several streams gets the handshake's answer first, then
        its streams through a L{SocketMux}; closing in the middle of its
        backlog, it gets whole frames, then the answer to its close.
        """
        context = webContext()
        client = _SocketClient(self, context, b"/news")
        session = client.protocol.session
        assert session is not None
        self.assertIsInstance(session.outlet, SocketMux)
        news = context.streams.open("news")  # type: ignore[union-attr]
        for i in range(40):
            news.publish([b"n%d-" % i + b"x" * 20_000])
        client.readSome()
        client.readSome()
        client.send((1000).to_bytes(2, "big"), opcode=8)
        frames = client.frames()
        self.assertEqual([c["type"] for c in controls(frames[:2])], ["hello", "stream"])
        data = [payload for opcode, payload in frames if opcode == 2 or (opcode == 1 and payload[:1] != b"\x1e")]
        self.assertEqual(data, [b"n%d-" % i + b"x" * 20_000 for i in range(len(data))])
        self.assertLess(len(data), 40)
        self.assertEqual(frames[-1], (8, (1000).to_bytes(2, "big")))
