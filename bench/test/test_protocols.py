"""
Tests for the benchmark's seq, WebSocket and SSE subscribers (and the C
one of C{-p sse-c}): they parse what streamd's own encoders make, however
it is split into reads.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from bench.load import filler
from bench.records import STAMP, Walker
from bench.ssereader import ssecount
from bench.test.test_bench import _OpeningMixin, _payloads, _WalkerMixin
from bench.webrecords import Dechunker, WebSocketFrames, pong
from bench.wire import (
    COMPRESS_FROM,
    ONE_STREAM_VERSION,
    AnyWalker,
    DeflateWebSocketWire,
    SeqWire,
    SseWire,
    WebSocketWire,
)
from streamd.framing import INT32
from streamd.seqframing import (
    SEQ,
    SEQ_BATCH,
    Batch,
    ClientHello,
    Gap,
    Ping,
    Pong,
    ServerHello,
    framed,
)
from streamd.web.deflate import Deflater
from streamd.web.framing import control, event, frame, namedEvent


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class SeqWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking a seq listener's MSG frames, all a version 1 subscriber gets.
    """

    wire = SeqWire()
    records = wire.records(10_000)

    def stream(self, payloads: list[bytes]) -> bytes:
        return SEQ.encodeEntry(payloads, 41)

    def test_controls(self) -> None:
        """
        HELLO, GAP and PING frames anywhere are control records, and only a
        PING gets an answer, a PONG.
        """
        payloads = _payloads()[:50]
        controls = [
            framed(ServerHello(1, bytes(8), 1, 0, 15000)),
            framed(Ping()),
            framed(Gap(1, 2, 1)),
        ]
        data = controls[0] + self.stream(payloads[:20]) + controls[1] + self.stream(payloads[20:]) + controls[2]
        for cut in range(0, len(data) + 1, 7):
            walker = Walker(self.records)
            self.assertEqual(walker.feed(data[:cut]) + walker.feed(data[cut:]), 50)
            self.assertEqual(walker.controls, controls)
        self.assertEqual([self.wire.reply(c) for c in controls], [b"", framed(Pong()), b""])

    def test_sequenceBreaks(self) -> None:
        """
        A run of same-length frames whose sequence numbers skip is not
        counted as a run: each frame is walked, so none is miscounted.
        """
        payloads = [bytes(20)] * 10
        data = SEQ.encodeEntry(payloads[:5], 1) + SEQ.encodeEntry(payloads[5:], 100)
        walker = Walker(self.records)
        self.assertEqual(walker.feed(data), 10)

    def test_bye(self) -> None:
        """
        A BYE is an error that names it.
        """
        bye = b"\x00\x00\x00\x0a\x05\x00\x02too slow"
        error = self.assertRaises(ValueError, Walker(self.records).feed, bye)
        self.assertIn("BYE", str(error))


def _entries(payloads: list[bytes], first: int = 41) -> bytes:
    """
    C{payloads} as a version 2 subscriber gets them: entries of up to 7
    messages, numbered from C{first}, each one BATCH but every third one
    MSG frames (an entry too big or in ascii10).
    """
    parts = []
    for i, start in enumerate(range(0, len(payloads), 7)):
        group = payloads[start : start + 7]
        encoded = SEQ.encodeEntry(group, first + start) if i % 3 == 2 else None
        parts.append(encoded or SEQ_BATCH.reframe(INT32.encodeMany(group), INT32, first + start))
    return b"".join(p for p in parts if p is not None)


class SeqBatchWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking a version 2 seq stream: BATCH and MSG frames, every message
    counted, sequence numbers checked.
    """

    wire = SeqWire()

    def walker(self, stamped: bool = False) -> AnyWalker:  # type: ignore[override]
        return self.wire.walker(10_000, stamped)

    def stream(self, payloads: list[bytes]) -> bytes:
        return _entries(payloads)

    def test_announcesV2(self) -> None:
        """
        The bench's seq subscribers of one stream speak version 3, as every
        client of one stream does (version 4 is the named streams'), which
        has BATCH frames.
        """
        self.assertEqual(self.wire.request(True), framed(ClientHello(3, 0, bytes(8), 0)))
        self.assertEqual(ONE_STREAM_VERSION, 3)

    def test_controls(self) -> None:
        """
        HELLO, GAP and PING frames between batches are control records; a
        GAP moves the next sequence number on past it.
        """
        payloads = _payloads()[:50]
        controls = [framed(ServerHello(2, bytes(8), 1, 0, 15000)), framed(Ping()), framed(Gap(100, 199, 1))]
        data = controls[0] + _entries(payloads[:20]) + controls[1] + _entries(payloads[20:], 61) + controls[2]
        data += _entries(payloads[:3], 200)
        for cut in range(0, len(data) + 1, 7):
            walker = self.walker()
            self.assertEqual(walker.feed(data[:cut]) + walker.feed(data[cut:]), 53)
            self.assertEqual(walker.controls, controls)

    def test_outOfSequence(self) -> None:
        """
        A frame whose first number does not follow the last one's is an
        error, in a BATCH as in a MSG.
        """
        for later in (framed(Batch(45, (b"x",))), SEQ.encodeEntry([b"x"], 43)):
            walker = self.walker()
            walker.feed(framed(Batch(41, (b"a", b"b", b"c"))))
            error = self.assertRaises(ValueError, walker.feed, later)
            self.assertIn("after 43", str(error))

    def test_malformed(self) -> None:
        """
        A BYE, an empty BATCH, a BATCH that ends inside a message and an
        empty frame are errors.
        """
        whole = framed(Batch(1, (b"abc",)))
        for data in (
            b"\x00\x00\x00\x0a\x05\x00\x02too slow",
            b"\x00\x00\x00\x09\x09" + bytes(8),
            (len(whole) - 5).to_bytes(4, "big") + whole[4:-1],
            bytes(8),
        ):
            self.assertRaises(ValueError, self.walker().feed, data)


class WebSocketWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking the frames of streamd's C{/ws}.
    """

    wire = WebSocketWire()
    records = wire.records(10_000)

    def stream(self, payloads: list[bytes]) -> bytes:
        return b"".join(frame(p) for p in payloads)

    def test_textAndBinary(self) -> None:
        """
        Text and binary messages, short and with 16-bit lengths, all count.
        """
        payloads = [b"hello", bytes(200), b"\xff" * 70_000]
        walker = Walker(WebSocketFrames(100_000))
        self.assertEqual(walker.feed(self.stream(payloads)), 3)

    def test_pings(self) -> None:
        """
        A ping is a control record, answered by a masked pong carrying the
        same data.
        """
        ping = bytes((0x89, 4)) + b"abcd"
        data = self.stream([bytes(20)] * 3) + ping + self.stream([bytes(20)])
        walker = Walker(self.records)
        self.assertEqual(walker.feed(data), 4)
        self.assertEqual(walker.controls, [ping])
        answer = self.wire.reply(ping)
        self.assertEqual(answer[:2], bytes((0x8A, 0x84)))
        mask = answer[2:6]
        self.assertEqual(bytes(b ^ mask[i % 4] for i, b in enumerate(answer[6:])), b"abcd")
        self.assertEqual(pong(ping, bytes(4)), bytes((0x8A, 0x84, 0, 0, 0, 0)) + b"abcd")

    def test_burstAtOnce(self) -> None:
        """
        A burst of frames with one header is taken at once, text or binary
        and empty ones too; a control message among text frames of its
        length is still an error.
        """
        for payload in (b"t" * 40, bytes(200), b""):
            walker = Walker(self.records)
            self.assertEqual(walker.feed(self.stream([payload] * 50)), 50)
        bye = control({"type": "bye"})
        texts = self.stream([b"x" * (len(bye) - 2)] * 20)
        self.assertRaises(ValueError, Walker(self.records).feed, texts + bye + texts)

    def test_notMessages(self) -> None:
        """
        streamd's control messages (a bye), a close frame, a masked or a
        fragmented frame are errors.
        """
        for data in (
            control({"type": "bye", "reason": "read_only", "code": 8}),
            bytes((0x88, 2)) + b"\x03\xe8",
            bytes((0x82, 0x81)) + bytes(5),
            bytes((0x02, 1)) + b"x",
        ):
            self.assertRaises(ValueError, Walker(self.records).feed, data)


class SseWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking the chunked event stream of streamd's C{/events}.
    """

    wire = SseWire()

    def walker(self, stamped: bool = False) -> AnyWalker:  # type: ignore[override]
        return self.wire.walker(10_000, stamped)

    def stream(self, payloads: list[bytes]) -> bytes:
        return b"".join(_chunk(event(p, f"e-{i}")) for i, p in enumerate(payloads))

    def test_completedOnlyWhenWhole(self) -> None:
        """
        An event counts when its blank line arrives, not before.
        """
        data = event(bytes(1000), "e-1")
        walker = self.walker()
        self.assertEqual(walker.feed(_chunk(data[:-1])), 0)
        self.assertEqual(walker.feed(_chunk(data[-1:])), 1)

    def test_forms(self) -> None:
        """
        Text messages (with line feeds), binary ones (base64) and named
        events and comments in between: the messages count and their stamps
        are decoded.
        """
        payloads = [b"\x00" * 7 + b"\nline\ntwo", b"\xff" * 8 + b"\r", bytes(8)]
        data = namedEvent("hello", {"epoch": "e", "next": 1}) + b": keepalive\n\nretry: 1000\n\n"
        data += b"".join(event(p, f"e-{i}") for i, p in enumerate(payloads))
        walker = self.walker(stamped=True)
        self.assertEqual(walker.feed(_chunk(data)), 3)
        self.assertEqual(walker.stamps, [10, 2**64 - 1, 0])

    def test_notEvents(self) -> None:
        """
        A bye, something that is not an event, or the end of the response
        is an error.
        """
        for data in (
            _chunk(namedEvent("bye", {"reason": "shutdown", "code": 11})),
            _chunk(b"<html>\n\n"),
            b"0\r\n\r\n",
        ):
            self.assertRaises(ValueError, self.walker().feed, data)

    def test_dechunker(self) -> None:
        """
        Chunk sizes in hex, with extensions, split anywhere.
        """
        data = b"3;x=y\r\nabc\r\n10\r\n" + b"d" * 16 + b"\r\n"
        for cut in range(len(data) + 1):
            chunks = Dechunker()
            self.assertEqual(chunks.feed(data[:cut]) + chunks.feed(data[cut:]), b"abc" + b"d" * 16)


def _accept(request: bytes) -> bytes:
    found = re.search(rb"Sec-WebSocket-Key: (\S+)\r\n", request)
    assert found is not None
    guid = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
    return base64.b64encode(hashlib.sha1(found.group(1) + guid).digest())


class SeqOpeningTests(_OpeningMixin, SynchronousTestCase):
    """
    Subscribing on a seq listener: HELLO, answered by the server's HELLO.
    """

    wire = SeqWire()
    answers = {True: framed(ServerHello(1, bytes(8), 1, 0, 15000))}

    def test_refused(self) -> None:
        """
        A first frame other than HELLO is an error.
        """
        self.assertRaises(ConnectionError, self.wire.answered, framed(Ping()), True)


class DeflateWebSocketWalkerTests(_WalkerMixin, SynchronousTestCase):
    """
    Walking the frames of streamd's C{/ws} with permessage-deflate, as its
    own deflater makes them: compressed or not, counted, and timed once
    inflated.
    """

    wire = DeflateWebSocketWire()
    records = wire.records(10_000)

    def walker(self, stamped: bool = False) -> AnyWalker:  # type: ignore[override]
        return self.wire.walker(10_000, stamped)

    def stream(self, payloads: list[bytes]) -> bytes:
        deflater = Deflater(COMPRESS_FROM)
        return b"".join(deflater.frame(p) for p in payloads)

    def test_compressed(self) -> None:
        """
        JSON payloads of 1 KiB are sent compressed, and walked.
        """
        payloads = [STAMP.pack(n) + filler(1016, "json") for n in range(1, 4)]
        data = self.stream(payloads)
        self.assertLess(len(data), 3 * 1024 // 2)
        self.assertEqual(data[0], 0xC1)
        for stamped in (False, True):
            self.assertWalks([data[:100], data[100:]], payloads, stamped)


class WebSocketOpeningTests(_OpeningMixin, SynchronousTestCase):
    """
    Opening C{/ws}: the handshake, then streamd's hello.
    """

    wire = WebSocketWire()
    answers = {
        True: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + _accept(wire.request(True)) + b"\r\n\r\n"
        b"" + control({"type": "hello", "epoch": "e", "next": 1})
    }

    def test_refused(self) -> None:
        """
        Another status, or a wrong accept key, is an error.
        """
        self.assertRaises(ConnectionError, self.wire.answered, b"HTTP/1.1 403 Forbidden\r\n\r\n", True)
        wrong = self.answers[True].replace(b"Accept: ", b"Accept: x")
        self.assertRaises(ConnectionError, self.wire.answered, wrong, True)


class SseOpeningTests(_OpeningMixin, SynchronousTestCase):
    """
    Opening C{/events}: a chunked event stream, up to the hello event.
    """

    wire = SseWire()
    answers = {
        True: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: text/event-stream; charset=utf-8\r\n\r\n"
        + _chunk(b"retry: 1000\n\n" + namedEvent("hello", {"epoch": "e", "next": 1}))
    }

    def test_refused(self) -> None:
        """
        Another status, or a response that is not a chunked event stream,
        is an error.
        """
        for data in (
            b"HTTP/1.1 401 Unauthorized\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
        ):
            self.assertRaises(ConnectionError, self.wire.answered, data, True)


class CountedSseTests(SynchronousTestCase):
    """
    C{bench/ssecount.c}, the C reader of C{-p sse-c}, compiled as the bench
    compiles it, counts what streamd's encoders make, however the response
    is split into reads.
    """

    def test_counts(self) -> None:
        """
        Behind the answer's head: the hello, a comment, text and binary
        events, in chunks written a few bytes at a time; it counts the
        messages alone, and says ready once the head is in.
        """
        payloads = [b"\x00" * 7 + b"\nline\ntwo", b"\xff" * 8 + b"\r", bytes(8), b"x" * 1000]
        events = namedEvent("hello", {"epoch": "e", "next": 1}) + b": keepalive\n\n"
        events += b"".join(event(p, f"e-{i}") for i, p in enumerate(payloads * 25))
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        body = b"".join(_chunk(events[at : at + 333]) for at in range(0, len(events), 333))
        with socket.create_server(("127.0.0.1", 0)) as server, tempfile.TemporaryDirectory() as tmp:
            counts = Path(tmp) / "counts"
            counts.write_bytes(bytes(8))
            port = server.getsockname()[1]
            process = subprocess.Popen(
                [ssecount(), str(port), str(counts), "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert process.stdin is not None and process.stdout is not None
            client, _ = server.accept()
            with client:
                self.assertTrue(client.recv(1000).startswith(b"GET /events HTTP/1.1\r\n"))
                client.sendall(head)
                self.assertEqual(process.stdout.readline(), b"ready\n")
                for at in range(0, len(body), 7):
                    client.sendall(body[at : at + 7])
                deadline = time.monotonic() + 10
                while int.from_bytes(counts.read_bytes(), sys.byteorder) < 100 and time.monotonic() < deadline:
                    time.sleep(0.01)
                process.stdin.close()
                self.assertEqual(process.wait(10), 0)
            self.assertEqual(int.from_bytes(counts.read_bytes(), sys.byteorder), 100)

    def test_bye(self) -> None:
        """
        A C{bye} event is an error, one line that says so.
        """
        with socket.create_server(("127.0.0.1", 0)) as server, tempfile.TemporaryDirectory() as tmp:
            counts = Path(tmp) / "counts"
            counts.write_bytes(bytes(8))
            process = subprocess.Popen(
                [ssecount(), str(server.getsockname()[1]), str(counts), "1"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            client, _ = server.accept()
            with client:
                client.recv(1000)
                client.sendall(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + _chunk(namedEvent("bye", {"reason": "shutdown", "code": 11}))
                )
                _, error = process.communicate(timeout=10)
            self.assertEqual(process.returncode, 1)
            self.assertEqual(error, b"ssecount: subscriber 0: the server said bye\n")
