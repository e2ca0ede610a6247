"""
Tests for the HTTP subscribers' framings, and for starting a subscriber
after a sequence number (L{streamd.web.resume}).
"""

from __future__ import annotations

from base64 import b64decode

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from streamd.cursor import Cursor
from streamd.web.resume import catchUp, parseEventId, parsePosition, subscribe
from streamd.web.sse import EventFraming, event
from streamd.web.websocket import WEBSOCKET, control, frame
from tests.webtools import EPOCH, controls, events, serverFrames, webContext


class WebSocketFramingTests(SynchronousTestCase):
    """
    Stream messages as WebSocket frames.
    """

    def test_textAndBinary(self) -> None:
        """
        Valid UTF-8 is a text frame, anything else a binary one.
        """
        self.assertEqual(
            serverFrames(frame("héllo".encode()) + frame(b"\xff\x00")),
            [(1, "héllo".encode()), (2, b"\xff\x00")],
        )

    def test_controlPrefixIsBinary(self) -> None:
        """
        A stream message that begins with the control character is sent as
        binary, so every text message beginning with it is the daemon's.
        """
        self.assertEqual(serverFrames(frame(b"\x1e{}")), [(2, b"\x1e{}")])
        self.assertEqual(controls(serverFrames(control({"type": "hello"}))), [{"type": "hello"}])

    def test_lengths(self) -> None:
        """
        Payloads of 125, 126, 65535 and 65536 bytes get the three header
        sizes of RFC 6455 and read back whole.
        """
        for size in (0, 125, 126, 65535, 65536):
            payload = b"x" * size
            self.assertEqual(serverFrames(frame(payload)), [(1, payload)])

    def test_entry(self) -> None:
        """
        An entry is its messages' frames joined.
        """
        self.assertEqual(serverFrames(WEBSOCKET.encodeEntry([b"a", b"b"], 7)), [(1, b"a"), (1, b"b")])


class EventFramingTests(SynchronousTestCase):
    """
    Stream messages as Server-Sent Events.
    """

    def test_ids(self) -> None:
        """
        Each message is one event whose id is the epoch and its sequence
        number.
        """
        parsed = events(EventFraming(EPOCH).encodeEntry([b"one", b"two"], 41).decode())
        self.assertEqual(parsed, [{"id": f"{EPOCH}-41", "data": "one"}, {"id": f"{EPOCH}-42", "data": "two"}])

    def test_lines(self) -> None:
        """
        A message of several lines is one event, its lines as C{data:}
        lines, which a browser joins again with line feeds.
        """
        self.assertEqual(events(event(b"a\nb\n", "e-1").decode()), [{"id": "e-1", "data": "a\nb\n"}])

    def test_binary(self) -> None:
        """
        Bytes that are not UTF-8, or hold a carriage return, are a
        C{binary} event carrying their base64.
        """
        for payload in (b"\xff\xfe", b"a\r\nb"):
            (parsed,) = events(event(payload, "e-1").decode())
            self.assertEqual(parsed["event"], "binary")
            self.assertEqual(b64decode(parsed["data"]), payload)

    def test_noInjection(self) -> None:
        """
        A message cannot end its event early or add fields: a blank line
        or an C{id:} line inside it stays data.
        """
        (parsed,) = events(event(b"x\n\nid: evil\ndata: y", "e-9").decode())
        self.assertEqual(parsed["id"], "e-9")


class PositionTests(SynchronousTestCase):
    """
    Reading where a client says it is.
    """

    def test_parsePosition(self) -> None:
        """
        A number of this epoch is a position; anything else starts at the
        head.
        """
        self.assertEqual(parsePosition("12", EPOCH, EPOCH), 12)
        self.assertIsNone(parsePosition("12", "other", EPOCH))
        self.assertIsNone(parsePosition("x", EPOCH, EPOCH))
        self.assertIsNone(parsePosition(None, EPOCH, EPOCH))
        self.assertIsNone(parsePosition("-3", EPOCH, EPOCH))

    def test_parseEventId(self) -> None:
        """
        C{Last-Event-ID: EPOCH-SEQ} splits at its last dash.
        """
        self.assertEqual(parseEventId(f"{EPOCH}-17"), (EPOCH, "17"))
        self.assertEqual(parseEventId(None), (None, None))


class ResumeTests(SynchronousTestCase):
    """
    L{subscribe} and L{catchUp}: a subscriber started after a message.
    """

    def setUp(self) -> None:
        self.context = webContext()
        self.hub = self.context.hub
        self.transport = StringTransport()
        self.cursor = Cursor(self.transport, self.hub, WEBSOCKET, self)
        self.hub.publish([b"1", b"2", b"3"])
        self.hub.publish([b"4", b"5"])

    def slowConsumer(self, reason: object, behind: int) -> None:
        self.fail(f"cut: {reason}")

    def payloads(self) -> list[bytes]:
        return [payload for _, payload in serverFrames(self.transport.value())]

    def test_head(self) -> None:
        """
        Without a position, a subscriber starts with the next message.
        """
        start = subscribe(self.cursor, None)
        catchUp(self.cursor, start, b"")
        self.assertEqual(start.next, 6)
        self.hub.publish([b"6"])
        self.assertEqual(self.payloads(), [b"6"])

    def test_midEntry(self) -> None:
        """
        After message 2, in the middle of an entry, it gets 3, 4, 5 once
        each, then is live again.
        """
        start = subscribe(self.cursor, 2)
        self.assertEqual((start.next, start.gap), (3, None))
        catchUp(self.cursor, start, b"")
        self.assertEqual(self.payloads(), [b"3", b"4", b"5"])
        self.assertTrue(self.cursor.live)
        self.assertEqual(self.cursor.messages, 3)

    def test_entryBoundary(self) -> None:
        """
        After the last message of an entry, it gets the next entry.
        """
        start = subscribe(self.cursor, 3)
        catchUp(self.cursor, start, b"")
        self.assertEqual(self.payloads(), [b"4", b"5"])

    def test_gap(self) -> None:
        """
        When what it missed left the history, the gap is reported and it
        starts at the oldest message held.
        """
        self.hub.history.evictOldest()
        start = subscribe(self.cursor, 1)
        self.assertEqual((start.next, start.gap), (4, (2, 3)))
        catchUp(self.cursor, start, b"")
        self.assertEqual(self.payloads(), [b"4", b"5"])

    def test_future(self) -> None:
        """
        A position at or past the newest message starts at the head.
        """
        self.assertEqual(subscribe(self.cursor, 99).next, 6)
        self.assertTrue(self.cursor.live)
