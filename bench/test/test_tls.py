"""
Tests for the benchmark's TLS: the certificate its daemons present, the
listeners that present it, and the subscribers' side, over socket pairs.
"""

from __future__ import annotations

import socket
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from bench.load import TLS_RECORD, TlsReader
from bench.records import Walker
from bench.servers import BACKLOG, LISTENERS, listenerArguments
from bench.test.test_bench import _OpeningMixin, _WalkerMixin
from bench.test.test_protocols import _accept
from bench.tls import HOST, clientContext, selfSigned
from bench.wire import STREAMD, SecureWebSocketWire, TlsWire
from streamd.web.framing import control

HANDSHAKE_STEPS = 10


def _directory(case: SynchronousTestCase) -> Path:
    """
    A new directory, removed after C{case}.
    """
    directory = tempfile.TemporaryDirectory(prefix="bench-tls-")
    case.addCleanup(directory.cleanup)
    return Path(directory.name)


class _Pair:
    """
    Both ends of a TLS connection over a socket pair, handshake done, both
    non-blocking: a subscriber's (C{client}, trusting C{trusted}) and a
    server's (C{server}, presenting the certificate in C{directory}).
    """

    def __init__(self, case: SynchronousTestCase, directory: Path, trusted: Path | None = None) -> None:
        key, certificate = selfSigned(directory)
        near, far = socket.socketpair()
        for sock in (near, far):
            case.addCleanup(sock.close)
            sock.setblocking(False)
        serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        serving.load_cert_chain(certificate, key)
        self.server = serving.wrap_socket(far, server_side=True, do_handshake_on_connect=False)
        self.client = clientContext(trusted or certificate).wrap_socket(
            near, server_hostname=HOST, do_handshake_on_connect=False
        )
        shaking = [self.client, self.server]
        for _ in range(HANDSHAKE_STEPS):
            for end in list(shaking):
                try:
                    end.do_handshake()
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    continue
                shaking.remove(end)
        if shaking:
            raise AssertionError(f"the handshake did not end in {HANDSHAKE_STEPS} steps")

    def send(self, data: bytes) -> None:
        """
        Send C{data} from the server's end, all of it.
        """
        self.server.setblocking(True)
        self.server.sendall(data)
        self.server.setblocking(False)


class CertificateTests(SynchronousTestCase):
    """
    The self-signed certificate of a daemon under test, as its subscribers
    check it.
    """

    def setUp(self) -> None:
        self.directory = _directory(self)

    def test_trusted(self) -> None:
        """
        A subscriber that trusts the certificate completes the handshake
        with a server presenting it for 127.0.0.1, and reads what it sends.
        """
        pair = _Pair(self, self.directory)
        pair.send(b"hello")
        reader = TlsReader()
        self.assertEqual(reader.buffer[: reader.read(pair.client)], b"hello")

    def test_anotherRefused(self) -> None:
        """
        A subscriber refuses a server that presents another certificate: it
        checks the one its daemon was given, not anything.
        """
        other = self.directory / "other"
        other.mkdir()
        _, trusted = selfSigned(other)
        self.assertRaises(ssl.SSLCertVerificationError, _Pair, self, self.directory, trusted)


class TlsReaderTests(SynchronousTestCase):
    """
    Reading a TLS socket record after record into one buffer.
    """

    def setUp(self) -> None:
        self.pair = _Pair(self, _directory(self))

    def test_severalRecords(self) -> None:
        """
        One read takes every record the socket has, not one record's 16 KiB
        as a read of a TLS socket does.
        """
        data = bytes(range(256)) * 400
        self.pair.send(data)
        reader = TlsReader()
        self.assertEqual(reader.buffer[: reader.read(self.pair.client)], data)
        self.assertRaises(BlockingIOError, reader.read, self.pair.client)

    def test_wholeRecordsOnly(self) -> None:
        """
        A read stops when the buffer has no room for another whole record,
        so that no plaintext is left in the C{ssl} object, where C{select}
        would not see it; the next read goes on from there.
        """
        data = bytes(range(256)) * 400
        self.pair.send(data)
        reader = TlsReader(TLS_RECORD * 2 + 100)
        got = bytearray()
        for expected in (2 * TLS_RECORD, 2 * TLS_RECORD, 2 * TLS_RECORD, len(data) - 6 * TLS_RECORD):
            count = reader.read(self.pair.client)
            self.assertEqual((count, self.pair.client.pending()), (expected, 0))
            got += reader.buffer[:count]
        self.assertEqual(got, data)

    def test_nothingYet(self) -> None:
        """
        With no plaintext ready (what came, if anything, was the handshake's
        last records), a read raises C{BlockingIOError}, as a plain
        non-blocking socket's does.
        """
        self.assertRaises(BlockingIOError, TlsReader().read, self.pair.client)

    def test_end(self) -> None:
        """
        The end of the connection reads as 0, after what came before it.
        """
        self.pair.send(b"last")
        self.pair.server.close()
        reader = TlsReader()
        self.assertEqual(reader.read(self.pair.client), 4)
        self.assertEqual(reader.read(self.pair.client), 0)


class TlsListenerTests(SynchronousTestCase):
    """
    The C{ssl:} listeners of a daemon under test.
    """

    def test_certificateMade(self) -> None:
        """
        TLS listeners are C{ssl:} endpoints on 127.0.0.1 with the bench's
        backlog, in L{LISTENERS}'s order, presenting a certificate made in
        the work directory, whose path is quoted for the endpoint's syntax.
        """
        with tempfile.TemporaryDirectory(prefix="with:colon-") as tmp:
            argv, certificate = listenerArguments(["https", "tls", "seq"], Path(tmp))
            self.assertEqual(certificate, Path(tmp) / "tls.pem")
            self.assertEqual(argv[:2], list(LISTENERS["seq"]))
            self.assertEqual((argv[2], argv[4]), ("--listen", "--http"))
            expected = x509.load_pem_x509_certificate(Path(tmp, "tls.pem").read_bytes())
            for description in (argv[3], argv[5]):
                reactor = MemoryReactor()
                serverFromString(reactor, description).listen(Factory())
                [(port, _, options, backlog, interface)] = reactor.sslServers
                self.assertEqual((port, backlog, interface), (0, BACKLOG, "127.0.0.1"))
                self.assertEqual(options.certificate.to_cryptography(), expected)

    def test_plainOnly(self) -> None:
        """
        Without a TLS listener no certificate is made.
        """
        with tempfile.TemporaryDirectory() as tmp:
            argv, certificate = listenerArguments(["http", "seq"], Path(tmp))
            self.assertEqual((argv, certificate), ([*LISTENERS["seq"], *LISTENERS["http"]], None))
            self.assertEqual(list(Path(tmp).iterdir()), [])


class TlsWireTests(_WalkerMixin, SynchronousTestCase):
    """
    A C{tls} subscriber walks int32 frames, on the C{tls} listener, and
    its publisher speaks plain int32.
    """

    wire = TlsWire()
    records = wire.records(10_000)

    def stream(self, payloads: list[bytes]) -> bytes:
        return b"".join(STREAMD.message(p) for p in payloads)

    def test_listener(self) -> None:
        """
        Its subscribers read the C{ssl:} listener over TLS; its publisher
        is int32's, on the main listener.
        """
        self.assertEqual((self.wire.listener, self.wire.secure), ("tls", True))
        self.assertIn(":privateKey=", LISTENERS["tls"][1])
        self.assertIs(self.wire.publisher, STREAMD)


class SecureWebSocketOpeningTests(_OpeningMixin, SynchronousTestCase):
    """
    Opening C{/ws} over TLS: as over TCP, on the C{https} listener.
    """

    wire = SecureWebSocketWire()
    answers = {
        True: b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + _accept(wire.request(True)) + b"\r\n\r\n"
        b"" + control({"type": "hello", "epoch": "e", "next": 1})
    }

    def test_overTls(self) -> None:
        """
        The handshake and the hello, read from a TLS connection, however
        the server's records cut them; then frames are walked.
        """
        pair = _Pair(self, _directory(self))
        answer = self.answers[True]
        for i in range(0, len(answer), 7):
            pair.send(answer[i : i + 7])
        pair.send(bytes((0x81, 2)) + b"hi")
        pair.client.setblocking(True)
        self.wire.open(pair.client, subscriber=True)
        pair.client.setblocking(False)
        walker = Walker(self.wire.records(100))
        reader = TlsReader()
        self.assertEqual(walker.feed(reader.buffer, reader.read(pair.client)), 1)

    def test_listener(self) -> None:
        """
        Its subscribers read the C{ssl:} HTTP listener, and the report also
        divides its figures by int32 over TLS's.
        """
        self.assertEqual((self.wire.listener, self.wire.secure), ("https", True))
        self.assertEqual(LISTENERS["https"][0], "--http")
        self.assertEqual(self.wire.alsoOver, TlsWire.name)
