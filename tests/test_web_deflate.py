"""
Tests for L{streamd.web.deflate}: messages compressed once for every client
that negotiated permessage-deflate (RFC 7692), the offers accepted, and what
clients send inflated within the daemon's limits.
"""

from __future__ import annotations

import json
import random
import tracemalloc
import zlib
from struct import pack

from autobahn.websocket.compress import PerMessageBzip2Offer, PerMessageDeflateOffer
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from streamd.config import ServerConfig
from streamd.reasons import Reason
from streamd.web.context import WebContext
from streamd.web.deflate import LIMIT, RSV1, WINDOW_BITS, Deflater, Inflater, acceptOffer
from streamd.web.framing import CONTROL
from streamd.web.metrics import MetricsResource
from tests.test_web_websocket import _Client
from tests.webtools import cancelBatchedTimers, webContext

OFFER = b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
"""
What Chromium offers.
"""


def inflate(payload: bytes) -> bytes:
    """
    A compressed message's payload inflated as a client does, with a fresh
    inflater (the server takes no context over).
    """
    return zlib.decompressobj(-WINDOW_BITS).decompress(payload + b"\x00\x00\xff\xff")


def deflate(data: bytes) -> bytes:
    """
    C{data} compressed as a client compresses a message.
    """
    compressor = zlib.compressobj(6, zlib.DEFLATED, -WINDOW_BITS)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def jsonMessage(n: int, size: int = 1024) -> bytes:
    """
    A JSON-like message of about C{size} bytes, different for each C{n}.
    """
    rows = []
    rng = random.Random(n)
    while len(json.dumps(rows)) < size:
        rows.append(
            {"symbol": rng.choice(["AAPL", "MSFT", "NVDA"]), "price": rng.randint(1000, 99999), "n": n}
        )
    return json.dumps(rows).encode()


def clientFrame(payload: bytes, first: int = 0x81) -> bytes:
    """
    A masked client frame (a zero mask: the payload as is) whose first byte
    is C{first}.
    """
    if len(payload) < 126:
        length = bytes((0x80 | len(payload),))
    elif len(payload) < 65536:
        length = bytes((0x80 | 126,)) + pack(">H", len(payload))
    else:
        length = bytes((0x80 | 127,)) + pack(">Q", len(payload))
    return bytes((first,)) + length + b"\0\0\0\0" + payload


def rawFrames(client: _Client) -> list[tuple[int, bytes]]:
    """
    The (first byte, payload) of every frame the daemon sent C{client}.
    """
    data = client.transport.value().partition(b"\r\n\r\n")[2]
    frames = []
    offset = 0
    while offset < len(data):
        first, length = data[offset], data[offset + 1] & 0x7F
        offset += 2
        if length == 126:
            length = int.from_bytes(data[offset : offset + 2], "big")
            offset += 2
        elif length == 127:
            length = int.from_bytes(data[offset : offset + 8], "big")
            offset += 8
        frames.append((first, data[offset : offset + length]))
        offset += length
    return frames


def received(client: _Client) -> list[bytes]:
    """
    The stream messages C{client} got, inflated where compressed.
    """
    messages = []
    for first, payload in rawFrames(client):
        if first & 0x0F not in (1, 2):
            continue
        data = inflate(payload) if first & RSV1 else payload
        if not data.startswith(CONTROL) or first & 0x0F == 2:
            messages.append(data)
    return messages


def scrape(context: WebContext) -> dict[str, float]:
    """
    The unlabelled samples of one C{GET /metrics}.
    """
    body = MetricsResource(context).render_GET(DummyRequest([b"metrics"]))
    return {
        s.name: s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
        if not s.labels
    }


def compressingContext(threshold: int = 64, config: ServerConfig | None = None) -> WebContext:
    context = webContext(config)
    context.deflater = Deflater(threshold)
    return context


class DeflaterTests(SynchronousTestCase):
    """
    One message at a time, compressed as RFC 7692 says.
    """

    def test_inflates(self) -> None:
        """
        A compressed message inflates, with a fresh inflater, to the message.
        """
        deflater = Deflater(1)
        message = jsonMessage(1)
        compressed = deflater.compress(message)
        assert compressed is not None
        self.assertLess(len(compressed), len(message) // 2)
        self.assertEqual(inflate(compressed), message)

    def test_eachOnItsOwn(self) -> None:
        """
        A message compressed after others is compressed as if alone: the
        same bytes each time (a compressor that kept its context would make
        the second of two like messages a reference to the first).
        """
        deflater = Deflater(1)
        message = jsonMessage(2)
        first = deflater.compress(message)
        deflater.compress(jsonMessage(3))
        self.assertEqual(deflater.compress(message), first)
        self.assertEqual(deflater.compress(message), first)
        self.assertEqual(deflater.messages, 4)

    def test_large(self) -> None:
        """
        A message over 64 KiB is compressed too (at a faster level).
        """
        message = b"".join(jsonMessage(i) for i in range(100))
        compressed = Deflater(1).compress(message)
        assert compressed is not None
        self.assertEqual(inflate(compressed), message)

    def test_asItIs(self) -> None:
        """
        A message shorter than the threshold, longer than the limit, or that
        deflate does not make shorter, goes as it is (C{None}).
        """
        deflater = Deflater(100)
        self.assertIsNone(deflater.compress(b"x" * 99))
        self.assertIsNotNone(deflater.compress(b"x" * 100))
        self.assertIsNone(deflater.compress(bytes(LIMIT + 1)))
        self.assertIsNotNone(deflater.compress(bytes(LIMIT)))
        self.assertIsNone(deflater.compress(random.Random(1).randbytes(1000)))

    def test_frames(self) -> None:
        """
        A compressed message is one final frame with RSV1 set, text or
        binary as the message is; an uncompressed one has RSV1 clear.
        """
        deflater = Deflater(10)
        text, binary = b"a" * 200, b"\xff" * 200
        for message, opcode in ((text, 1), (binary, 2), (CONTROL + b"a" * 200, 2)):
            frame = deflater.frame(message)
            self.assertEqual(frame[0], 0x80 | RSV1 | opcode)
            self.assertEqual(inflate(frame[2 : 2 + frame[1]]), message)
        self.assertEqual(deflater.frame(b"short"), b"\x81\x05short")


class OfferTests(SynchronousTestCase):
    """
    Which of a client's offers the daemon accepts, as autobahn parses them.
    """

    def test_accepted(self) -> None:
        """
        A plain offer is accepted: the server takes no context over, and
        asks the client to take none over either.
        """
        accepted = acceptOffer([PerMessageDeflateOffer.parse({"client_max_window_bits": [True]})])
        assert accepted is not None
        self.assertEqual(
            accepted.get_extension_string(),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        )

    def test_askedNoContextTakeover(self) -> None:
        """
        An offer that asks for no server context takeover gets it, said once.
        """
        offer = PerMessageDeflateOffer.parse({"server_no_context_takeover": [True]})
        accepted = acceptOffer([offer])
        assert accepted is not None
        self.assertEqual(accepted.get_extension_string().count("server_no_context_takeover"), 1)

    def test_window(self) -> None:
        """
        An offer that asks for a server window smaller than 15 bits is
        declined (the one compressed form could not suit it); a later
        offer of the same client may be accepted; one that asks for 15 is.
        """
        small = PerMessageDeflateOffer.parse({"server_max_window_bits": ["10"]})
        self.assertIsNone(acceptOffer([small]))
        plain = PerMessageDeflateOffer.parse({})
        accepted = acceptOffer([small, plain])
        assert accepted is not None
        self.assertIs(accepted.offer, plain)
        full = PerMessageDeflateOffer.parse({"server_max_window_bits": ["15"]})
        accepted = acceptOffer([full])
        assert accepted is not None
        self.assertIn("server_max_window_bits=15", accepted.get_extension_string())

    def test_otherExtensions(self) -> None:
        """
        An offer of another compression (autobahn parses permessage-bzip2)
        is declined.
        """
        self.assertIsNone(acceptOffer([PerMessageBzip2Offer.parse({})]))


class CompressedStreamTests(SynchronousTestCase):
    """
    The stream, compressed once for every WebSocket client that negotiated
    permessage-deflate.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_negotiated(self) -> None:
        """
        With a deflater, a client's offer is answered; without one it is
        not, and that client's stream is not compressed.
        """
        client = _Client(compressingContext(), headers=OFFER)
        self.assertIn(
            b"permessage-deflate; client_no_context_takeover; server_no_context_takeover", client.status
        )
        context = webContext()
        plain = _Client(context, headers=OFFER)
        self.assertNotIn(b"permessage-deflate", plain.status)
        context.hub.publish([jsonMessage(1)])
        self.assertEqual([first for first, _ in rawFrames(plain)], [0x81, 0x81])

    def test_compressedOnce(self) -> None:
        """
        Two compressing clients get the same compressed frames, made once;
        control messages are not compressed, short messages neither; a
        client that did not offer gets the messages as they are.
        """
        context = compressingContext(threshold=64)
        first, second = _Client(context, headers=OFFER), _Client(context, headers=OFFER)
        plain = _Client(context)
        messages = [jsonMessage(1), b"short", jsonMessage(2)]
        context.hub.publish(messages[:2])
        context.hub.publish(messages[2:])
        assert context.deflater is not None
        self.assertEqual(context.deflater.messages, 2)
        for client in (first, second):
            self.assertEqual(received(client), messages)
            firsts = [f for f, _ in rawFrames(client)]
            self.assertEqual(firsts, [0x81, 0xC1, 0x81, 0xC1])
        self.assertEqual(rawFrames(first), rawFrames(second))
        self.assertEqual(received(plain), messages)
        self.assertEqual([f for f, _ in rawFrames(plain)], [0x81] * 4)
        self.assertLess(context.hub.stats.bytesOut, 3 * sum(map(len, messages)))

    def test_severalStreams(self) -> None:
        """
        A client of several streams gets each entry after its C{in} control
        message, which is not compressed, and the messages compressed.
        """
        context = compressingContext()
        assert context.streams is not None
        client = _Client(context, b"/left,right", headers=OFFER)
        left = jsonMessage(5)
        context.streams.open("left").publish([left])
        frames = rawFrames(client)
        self.assertEqual([f for f, _ in frames], [0x81, 0x81, 0x81, 0x81, 0xC1])
        self.assertEqual(json.loads(frames[3][1][1:]), {"type": "in", "stream": "left", "first": 1})
        self.assertEqual(inflate(frames[4][1]), left)

    def test_publishCompressed(self) -> None:
        """
        A compressed message from a client is published inflated, and
        reaches a plain client as it was before compression.
        """
        context = compressingContext()
        sender, plain = _Client(context, headers=OFFER), _Client(context)
        message = jsonMessage(7, 3000)
        sender.protocol.dataReceived(clientFrame(deflate(message), 0xC1))
        sender.protocol.dataReceived(clientFrame(deflate(message), 0xC1))
        self.assertEqual(received(plain), [message, message])
        self.assertEqual(sender.protocol.session.messagesIn, 2)

    def test_zipBomb(self) -> None:
        """
        A small compressed frame that inflates past C{--max-message-size}
        is cut as a malformed frame once the limit is passed, holding no
        more than the limit meanwhile; nothing is published.
        """
        context = compressingContext(config=ServerConfig(maxMessageSize=64 * 1024))
        sender, plain = _Client(context, headers=OFFER), _Client(context)
        bomb = deflate(bytes(64 * 1024 * 1024))
        self.assertLess(len(bomb), 64 * 1024)
        tracemalloc.start()
        try:
            sender.protocol.dataReceived(clientFrame(bomb, 0xC2))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 2 * 1024 * 1024)
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 1)
        self.assertEqual(received(plain), [])
        self.assertEqual(context.hub.history.nextSequence, 1)
        bye = [json.loads(p[1:]) for f, p in rawFrames(sender) if p.startswith(CONTROL)][-1]
        self.assertEqual(bye["reason"], "bad_frame")

    def test_bombInPieces(self) -> None:
        """
        The limit holds for the whole message: a bomb sent as many frames,
        each inflating to less than the limit, is cut too.
        """
        context = compressingContext(config=ServerConfig(maxMessageSize=64 * 1024))
        sender = _Client(context, headers=OFFER)
        bomb = deflate(bytes(1024 * 1024))
        pieces = [bomb[i : i + 100] for i in range(0, len(bomb), 100)]
        sender.protocol.dataReceived(clientFrame(pieces[0], 0x42))
        for piece in pieces[1:-1]:
            sender.protocol.dataReceived(clientFrame(piece, 0x00))
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 1)
        self.assertEqual(context.hub.history.nextSequence, 1)

    def test_corrupt(self) -> None:
        """
        A compressed frame that does not inflate is cut as a malformed
        frame, in one line, without a traceback.
        """
        context = compressingContext()
        sender = _Client(context, headers=OFFER)
        sender.protocol.dataReceived(clientFrame(b"\xff" * 40, 0xC2))
        self.assertEqual(context.hub.stats.disconnects[Reason.BAD_FRAME], 1)
        self.assertEqual(self.flushLoggedErrors(), [])


class MetricsTests(SynchronousTestCase):
    """
    C{/metrics} with compression on.
    """

    def setUp(self) -> None:
        self.addCleanup(cancelBatchedTimers)

    def test_counted(self) -> None:
        """
        The messages compressed, once each however many clients get them,
        their bytes and what they were compressed to; no such series when
        compression is off.
        """
        context = compressingContext(threshold=64)
        clients = [_Client(context, headers=OFFER) for _ in range(2)]
        message = jsonMessage(1)
        context.hub.publish([message, b"short"])
        assert context.deflater is not None
        samples = scrape(context)
        self.assertEqual(samples["streamd_websocket_compressed_messages_total"], 1)
        self.assertEqual(samples["streamd_websocket_compressed_bytes_in_total"], len(message))
        self.assertEqual(
            samples["streamd_websocket_compressed_bytes_out_total"],
            len(context.deflater.compress(message) or b""),
        )
        self.assertEqual([len(received(client)) for client in clients], [2, 2])
        plain = scrape(webContext())
        self.assertIn("streamd_bytes_out_total", plain)
        self.assertNotIn("streamd_websocket_compressed_messages_total", plain)


class InflaterTests(SynchronousTestCase):
    """
    The inflater on its own.
    """

    def test_bounded(self) -> None:
        """
        Each call inflates at most the limit and one byte: past it, the
        message is given up and C{failed} told why, once.
        """
        failures: list[str] = []
        inflater = Inflater(WINDOW_BITS, False, 1000, failures.append)
        inflater.start_decompress_message()
        self.assertEqual(inflater.decompress_message_data(deflate(bytes(10_000_000))), b"")
        self.assertEqual(failures, ["sent a compressed message that inflates past the 1000-byte limit"])
        self.assertEqual(inflater.decompress_message_data(b"more"), b"")
        inflater.end_decompress_message()
        self.assertEqual(len(failures), 1)

    def test_messages(self) -> None:
        """
        Messages within the limit inflate whole, each with a fresh inflater
        when the client takes no context over.
        """
        failures: list[str] = []
        inflater = Inflater(WINDOW_BITS, False, 1000, failures.append)
        for message in (b"a" * 1000, b"b" * 10):
            compressed = deflate(message)
            inflater.start_decompress_message()
            data = inflater.decompress_message_data(compressed[:5]) + inflater.decompress_message_data(
                compressed[5:]
            )
            inflater.end_decompress_message()
            self.assertEqual(data, message)
        self.assertEqual(failures, [])
