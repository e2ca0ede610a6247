"""
Tests for the web's framings (L{streamd.web.framing}), and for reading where
a client says it is (L{streamd.web.context}).
"""

from __future__ import annotations

from base64 import b64decode

from hypothesis import example, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from streamd.fanout.resume import Start, StartRequest
from streamd.framing import INT32
from streamd.web.context import BadPosition, parseEventId, startRequest
from streamd.web.framing import WEBSOCKET, EventFraming, control, event, eventBatch, frame, frames
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

    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=300),
                st.text(max_size=200).map(str.encode),
                st.sampled_from([b"", b"\x1e{}", b"a\x1eb", b"x" * 125, b"x" * 126, b"x" * 65536]),
            ),
            max_size=20,
        ),
        st.booleans(),
    )
    # A fixed-size batch, and one whose lengths add up as one would.
    @example([b"ab", b"cd", b"ef"], False)
    @example([b"ab", b"c", b"def"], False)
    @example([b"x" * 126, b"x" * 125, b"x" * 127], True)
    @example([b"", b""], False)
    # Headers of a fixed-size batch's int32 bytes that hold CONTROL, or are
    # not ASCII, and one that is neither.
    @example([b"x" * 30] * 3, False)
    @example([b"x" * 200] * 3, False)
    @example([b"x" * 1024] * 3, True)
    def test_batchIsEachFrame(self, payloads: list[bytes], views: bool) -> None:
        """
        A batch's frames, made at once (in C where it is all ASCII text),
        are the L{frame} of each message joined, whether its payloads are
        bytes or views of a read, and whether or not its int32 bytes are
        given to tell whether it is text.
        """
        batch = [memoryview(p) for p in payloads] if views else payloads
        each = b"".join(frame(p) for p in payloads)
        self.assertEqual(frames(batch), each)
        self.assertEqual(frames(batch, INT32.encodeMany(payloads)), each)


class EventFramingTests(SynchronousTestCase):
    """
    Stream messages as Server-Sent Events.
    """

    def test_ids(self) -> None:
        """
        Each message is one event whose id is the epoch and its sequence
        number.
        """
        parsed = events(EventFraming(webContext().hub.history).encodeEntry([b"one", b"two"], 41).decode())
        self.assertEqual(parsed, [{"id": f"{EPOCH}-41", "data": "one"}, {"id": f"{EPOCH}-42", "data": "two"}])

    @given(
        st.lists(
            st.one_of(
                st.binary(max_size=300),
                st.text(max_size=200).map(str.encode),
                st.text(st.characters(max_codepoint=127), max_size=100).map(str.encode),
                st.sampled_from([b"", b"a\nb", b"a\rb", b"\x00", b"x" * 2000]),
            ),
            max_size=20,
        ),
        st.integers(min_value=0, max_value=2**63),
        st.booleans(),
    )
    @example([b"one", b"a\nb"], 7, False)
    @example([b"one", b"a\rb"], 7, False)
    @example([b"one", "é".encode()], 7, True)
    def test_batchIsEachEvent(self, payloads: list[bytes], first: int, views: bool) -> None:
        """
        A batch's events, made at once (in one pass where it is all ASCII
        with no line break), are the L{event} of each message joined, with
        ids numbered on from C{first}, whether its payloads are bytes or
        views of a read.
        """
        batch = [memoryview(p) for p in payloads] if views else payloads
        self.assertEqual(
            eventBatch(batch, "s/ab", first),
            b"".join(event(p, f"s/ab-{first + i}") for i, p in enumerate(payloads)),
        )

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
    Reading where a client says it is: a position of an epoch, the head, or
    a request that does not parse, which is an error and never the head.
    """

    def test_startRequest(self) -> None:
        """
        A number and an epoch of 16 hex digits ask to resume after that
        message; neither asks for the head.
        """
        self.assertEqual(startRequest("12", EPOCH), StartRequest(Start.RESUME, bytes.fromhex(EPOCH), 12))
        self.assertEqual(startRequest(None, None), StartRequest())

    def test_badPositions(self) -> None:
        """
        A position without its epoch (or the reverse), a number that is not
        one, or an epoch that is not 16 hex digits is refused with a reason,
        not silently taken as the head.
        """
        for last, epoch in (("12", None), (None, EPOCH), ("x", EPOCH), ("-3", EPOCH), ("12", "other")):
            self.assertRaises(BadPosition, startRequest, last, epoch)

    def test_parseEventId(self) -> None:
        """
        C{Last-Event-ID: EPOCH-SEQ} splits at its last dash.
        """
        self.assertEqual(parseEventId(f"{EPOCH}-17"), (EPOCH, "17"))
        self.assertEqual(parseEventId("17"), (None, "17"))
