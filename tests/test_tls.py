"""
Tests for TLS: L{streamd.tls}, C{--client-ca} on the server, the client's TLS
options, with certificates made here; real TLS connections on loopback are
in L{tests.integration.test_tls}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.python.failure import Failure
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from streamd.client.__main__ import ClientOptions
from streamd.config import Listen
from streamd.framing import INT32
from streamd.tap import Options
from streamd.tls import TLSConfigError, handshakeFailure


class _Authority:
    """
    A certificate authority that signs certificates for tests.
    """

    def __init__(self, name: str) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            _builder(subject, subject, self.key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    def issue(
        self, name: str, hosts: Iterable[str] = (), client: bool = False
    ) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        """
        A key and a certificate for C{name}, valid for C{hosts} (names or IP
        addresses), as a server's or a client's.
        """
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = (
            _builder(subject, self.certificate.subject, key.public_key())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        alternatives = [_generalName(host) for host in hosts]
        if alternatives:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        return key, builder.sign(self.key, hashes.SHA256())


def _builder(subject: x509.Name, issuer: x509.Name, publicKey: Any) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _generalName(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _pem(item: Any) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PKI:
    """
    Certificates for every case, written as PEM files into a new directory:

      - C{ca}: the CA clients trust; C{roots/} holds only its certificate
        (for C{tls:...:trustRoots=DIR}).
      - C{server.pem}/C{server.key}: localhost and 127.0.0.1, signed by C{ca}.
      - C{rogue.pem}/C{rogue.key}: the same names, signed by a CA nobody trusts.
      - C{clients-ca.pem}: the CAs the server takes client certificates from
        (an unrelated CA, then the clients' CA: a file of several).
      - C{client.pem}/C{client.key}: a client signed by the clients' CA;
        C{client-both.pem} holds both.
      - C{stranger.pem}/C{stranger.key}: a client signed by C{ca}, which the
        server does not take client certificates from.
    """

    def __init__(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="streamd-tls-")
        os.mkdir(self.path("roots"))
        ca = _Authority("streamd test CA")
        rogueCA = _Authority("rogue CA")
        clientsCA = _Authority("streamd clients CA")
        self.write("ca.pem", ca.certificate)
        self.write("roots/ca.pem", ca.certificate)
        self.write("clients-ca.pem", _Authority("unrelated CA").certificate, clientsCA.certificate)
        for name, authority, hosts, client in [
            ("server", ca, ["localhost", "127.0.0.1"], False),
            ("rogue", rogueCA, ["localhost", "127.0.0.1"], False),
            ("client", clientsCA, [], True),
            ("stranger", ca, [], True),
        ]:
            key, certificate = authority.issue(name, hosts, client)
            self.write(f"{name}.pem", certificate)
            self.write(f"{name}.key", key)
        self.write("client-both.pem", self.read("client.pem"), self.read("client.key"))

    def read(self, name: str) -> bytes:
        with open(self.path(name), "rb") as f:
            return f.read()

    def write(self, name: str, *items: Any) -> str:
        """
        Write C{items} (certificates, keys or PEM bytes) to the file C{name}.
        """
        with open(self.path(name), "wb") as f:
            for item in items:
                f.write(item if isinstance(item, bytes) else _pem(item))
        return self.path(name)

    def path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def listen(self, name: str = "server") -> str:
        """
        An C{ssl:} description on a free loopback port with C{name}'s key.
        """
        key = quoteStringArgument(self.path(f"{name}.key"))
        certificate = quoteStringArgument(self.path(f"{name}.pem"))
        return f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={certificate}"

    def remove(self) -> None:
        shutil.rmtree(self.directory)


class _PKIMixin:
    """
    Makes a fresh L{PKI} for each test and removes it afterwards.
    """

    pki: PKI
    addCleanup: Callable[..., None]

    def setUp(self) -> None:
        self.pki = PKI()
        self.addCleanup(self.pki.remove)


def serverEndpoint(reactor: Any, description: str, clientCA: str) -> IStreamServerEndpoint:
    """
    The endpoint of C{description} whose clients need a certificate from a
    CA in C{clientCA}, made through the C{streamd:} endpoint type.
    """
    endpoint = serverFromString(reactor, f"streamd:{description}:clientCA={quoteStringArgument(clientCA)}")
    return endpoint.build()  # type: ignore[no-any-return]


class ServerEndpointTests(_PKIMixin, SynchronousTestCase):
    """
    L{streamd.tls.mutualTLSEndpoint} refuses what it cannot honour, with a
    one-line reason.
    """

    def test_notSSL(self) -> None:
        """
        Client certificates cannot be asked for on a plain TCP endpoint.
        """
        error = self.assertRaises(ValueError, serverEndpoint, reactor, "tcp:0", self.pki.path("ca.pem"))
        self.assertIn("need an ssl: endpoint", str(error))

    def test_unsupportedParameter(self) -> None:
        """
        An C{ssl:} parameter that cannot be combined with client
        certificates is named.
        """
        description = self.pki.listen() + ":sslmethod=TLSv1_2_METHOD"
        error = self.assertRaises(ValueError, serverEndpoint, reactor, description, self.pki.path("ca.pem"))
        self.assertEqual(str(error), "sslmethod cannot be combined with --client-ca")

    def test_badFiles(self) -> None:
        """
        A missing file, a file without certificates and a key that belongs to
        another certificate are each reported in one line.
        """
        notPEM = self.pki.write("not.pem", b"hello\n")
        cases = [
            (self.pki.path("missing.pem"), "cannot read --client-ca ", "No such file or directory"),
            (notPEM, "--client-ca ", "holds no PEM certificate"),
        ]
        for caFile, start, end in cases:
            error = self.assertRaises(TLSConfigError, serverEndpoint, reactor, self.pki.listen(), caFile)
            self.assertTrue(str(error).startswith(start) and str(error).endswith(end), str(error))
        mismatched = self.pki.listen().replace("server.pem", "rogue.pem")
        error = self.assertRaises(
            TLSConfigError, serverEndpoint, reactor, mismatched, self.pki.path("ca.pem")
        )
        self.assertIn("does not belong to certificate", str(error))
        self.assertNotIn("\n", str(error))

    def test_encryptedKey(self) -> None:
        """
        A key protected by a passphrase is refused with a reason, since a
        daemon has nobody to ask for the passphrase.
        """
        key = serialization.load_pem_private_key(self.pki.read("server.key"), None)
        encrypted = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
        self.pki.write("server.key", encrypted)
        error = self.assertRaises(
            TLSConfigError, serverEndpoint, reactor, self.pki.listen(), self.pki.path("ca.pem")
        )
        self.assertEqual(
            str(error),
            f"private key {self.pki.path('server.key')} is encrypted; streamd needs it unencrypted",
        )


class ClientCAOptionTests(_PKIMixin, SynchronousTestCase):
    """
    C{twistd streamd --client-ca} applies to C{ssl:} listeners only, and its
    mistakes are usage errors.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_sslListenersOnly(self) -> None:
        """
        The CA file goes with each C{ssl:} listener, not with a TCP one.
        """
        caFile = self.pki.path("clients-ca.pem")
        options = self.parse("--port", "0", "--listen", self.pki.listen(), "--client-ca", caFile)
        self.assertEqual(
            options["config"].listens,
            (Listen("tcp:0:interface=127.0.0.1:backlog=4096", INT32), Listen(self.pki.listen() + ":backlog=4096", INT32, caFile)),
        )

    def test_httpsListener(self) -> None:
        """
        An C{ssl:} C{--http} endpoint is enough for --client-ca, which its
        clients then need a certificate from.
        """
        caFile = self.pki.path("clients-ca.pem")
        options = self.parse("--port", "0", "--http", self.pki.listen(), "--client-ca", caFile)
        self.assertEqual(options["config"].clientCA, caFile)

    def test_noSSLListener(self) -> None:
        """
        --client-ca without any C{ssl:} listener is a usage error.
        """
        error = self.assertRaises(
            UsageError, self.parse, "--port", "0", "--client-ca", self.pki.path("clients-ca.pem")
        )
        self.assertIn("--client-ca needs an ssl: listener", str(error))

    def test_missingCAFile(self) -> None:
        """
        A CA file that cannot be read is a one-line usage error.
        """
        missing = self.pki.path("missing.pem")
        error = self.assertRaises(
            UsageError, self.parse, "--listen", self.pki.listen(), "--client-ca", missing
        )
        self.assertEqual(str(error), f"cannot read --client-ca {missing}: No such file or directory")

    def test_badServerKey(self) -> None:
        """
        A server key that cannot be read is named in a usage error.
        """
        listen = self.pki.listen().replace("server.key", "missing.key")
        error = self.assertRaises(
            UsageError, self.parse, "--listen", listen, "--client-ca", self.pki.path("clients-ca.pem")
        )
        self.assertIn("cannot read private key", str(error))


class ClientOptionsTests(_PKIMixin, SynchronousTestCase):
    """
    The client's TLS options: what implies TLS, what cannot be combined, and
    one-line errors for bad files.
    """

    def parse(self, *argv: str) -> ClientOptions:
        options = ClientOptions()
        options.parseOptions(list(argv))
        return options

    def test_impliesTLS(self) -> None:
        """
        --tls, --cafile, --cert and --insecure each turn TLS on; nothing does
        by default.
        """
        self.assertFalse(self.parse()["tls"])
        caFile = self.pki.path("ca.pem")
        for argv in (["--tls"], ["--cafile", caFile], ["--cert", caFile], ["--insecure"]):
            self.assertTrue(self.parse(*argv)["tls"], argv)

    def test_conflicts(self) -> None:
        """
        TLS flags do not mix with --connect, --key needs --cert, and
        --insecure does not mix with --cafile.
        """
        for argv, words in [
            (["--connect", "tcp:host=h:port=1", "--tls"], "with --connect, use tls:host="),
            (["--key", "k.pem"], "--key needs --cert"),
            (["--insecure", "--cafile", "ca.pem"], "choose one"),
        ]:
            error = self.assertRaises(UsageError, self.parse, *argv)
            self.assertIn(words, str(error))

    def test_badFiles(self) -> None:
        """
        A CA file or client certificate that cannot be used is a one-line
        ValueError when the endpoint is made (the client turns it into exit
        status 1).
        """
        missing = self.pki.path("missing.pem")
        options = self.parse("--cafile", missing)
        error = self.assertRaises(ValueError, options.endpoint, reactor)
        self.assertEqual(str(error), f"cannot read --cafile {missing}: No such file or directory")
        options = self.parse("--cert", self.pki.path("client.pem"), "--key", self.pki.path("server.key"))
        error = self.assertRaises(ValueError, options.endpoint, reactor)
        self.assertIn("does not belong to certificate", str(error))


class HandshakeFailureTests(SynchronousTestCase):
    """
    L{handshakeFailure} says in one line why a TLS handshake failed.
    """

    def test_descriptions(self) -> None:
        """
        OpenSSL's reasons are kept and explained; a host name mismatch names
        the host; anything else is not a TLS failure.
        """
        verify = Failure(SSL.Error([("SSL routines", "", "certificate verify failed")]))
        self.assertEqual(
            handshakeFailure(verify),
            "TLS handshake failed: certificate verify failed"
            " (the server's certificate is not from a CA we trust, or not valid now)",
        )
        required = Failure(SSL.Error([("SSL routines", "", "tlsv13 alert certificate required")]))
        self.assertIn("requires a client certificate", handshakeFailure(required) or "")
        self.assertIsNone(handshakeFailure(Failure(ConnectionError("reset"))))
