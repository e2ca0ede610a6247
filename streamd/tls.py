"""
TLS on both ends: C{ssl:} listeners that require client certificates (mutual
TLS), the client's verified TLS connections, and one-line reasons for failed
handshakes.

Twisted's C{ssl:} server endpoint string cannot ask for client certificates,
so L{mutualTLSEndpoint} takes the same parameters, as Twisted's parser split
them (see L{streamd.listen.endpoints}), and builds the endpoint with a
C{CertificateOptions} that trusts the given CAs.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from service_identity import VerificationError
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IStreamServerEndpoint
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    DiffieHellmanParameters,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath

from streamd._errors import ConfigError

# The keywords of Twisted's ssl: server endpoint that client certificates
# can be combined with (sslmethod is left out: Twisted's defaults are better).
_SSL_KEYWORDS = frozenset(
    {"port", "interface", "backlog", "privateKey", "certKey", "extraCertChain", "dhParameters"}
)

# The private keys that TLS certificates use.
PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
    | dsa.DSAPrivateKey
)


class TLSConfigError(ConfigError):
    """
    A certificate, key or CA file that cannot be used; the message is one
    line, fit for a user.
    """


def mutualTLSEndpoint(
    reactor: Any, args: tuple[str, ...], kwargs: dict[str, str], clientCA: str
) -> IStreamServerEndpoint:
    """
    The C{ssl:} server endpoint that C{args} and C{kwargs} describe (as
    Twisted's parser splits an C{ssl:} description, without its type),
    completing a handshake only with clients whose certificate a CA in the
    PEM file C{clientCA} signed.

    @raise TLSConfigError: for a file that cannot be used.
    @raise ValueError: for arguments that Twisted's C{ssl:} takes but that
        cannot be combined with client certificates, or are missing.
    """
    if len(args) > 1 or (args and "port" in kwargs):
        raise ValueError("too many positional arguments")
    unknown = set(kwargs) - _SSL_KEYWORDS
    if unknown:
        raise ValueError(f"{', '.join(sorted(unknown))} cannot be combined with --client-ca")
    port = args[0] if args else kwargs.get("port")
    if port is None:
        raise ValueError("no port given")
    keyPath = kwargs.get("privateKey", "server.pem")
    key, certificate = loadKeyPair(kwargs.get("certKey", keyPath), keyPath, "certKey")
    chain = (
        loadCertificates(kwargs["extraCertChain"], "extraCertChain") if "extraCertChain" in kwargs else None
    )
    dhParameters = kwargs.get("dhParameters")
    options = CertificateOptions(
        privateKey=PKey.from_cryptography_key(key),
        certificate=X509.from_cryptography(certificate),
        extraCertChain=[X509.from_cryptography(c) for c in chain] if chain else None,
        dhParameters=DiffieHellmanParameters.fromFile(FilePath(dhParameters)) if dhParameters else None,
        trustRoot=_trustRoot(loadCertificates(clientCA, "--client-ca")),
    )
    return SSL4ServerEndpoint(
        reactor,
        int(port),
        options,
        backlog=int(kwargs.get("backlog", "50")),
        interface=kwargs.get("interface", ""),
    )


def clientTLS(
    host: str,
    cafile: str | None = None,
    cert: str | None = None,
    key: str | None = None,
    insecure: bool = False,
) -> IOpenSSLClientConnectionCreator:
    """
    TLS settings for a client connecting to C{host}, to wrap an endpoint
    with C{twisted.internet.endpoints.wrapClientTLS}.  The server's
    certificate must be valid for C{host} and signed by a CA in C{cafile}, or
    by one the system trusts.

    @param cafile: a PEM file of the CA certificates (or the self-signed
        server certificate) to trust instead of the system's.
    @param cert: a PEM client certificate, for servers that ask for one; its
        private key is in C{key}, or in the same file.
    @param insecure: accept any server certificate for any name.  Only for
        tests: anyone between client and server can then read and change
        the stream.
    @raise TLSConfigError: for a file that cannot be used.
    """
    identity = None
    if cert is not None:
        privateKey, certificate = loadKeyPair(cert, key or cert, "--cert")
        identity = PrivateCertificate.fromCertificateAndKeyPair(
            Certificate(X509.from_cryptography(certificate)), KeyPair(PKey.from_cryptography_key(privateKey))
        )
    if insecure:
        if identity is None:
            return CertificateOptions()
        return CertificateOptions(privateKey=identity.privateKey.original, certificate=identity.original)
    trustRoot = _trustRoot(loadCertificates(cafile, "--cafile")) if cafile else None
    return optionsForClientTLS(host, trustRoot=trustRoot, clientCertificate=identity)


def loadCertificates(path: str, what: str) -> list[x509.Certificate]:
    """
    Every certificate in a PEM file.

    @param what: how the user named the file (an option), for the message.
    @raise TLSConfigError: if the file cannot be read or holds no certificate.
    """
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TLSConfigError(f"{what} {path} holds no PEM certificate") from None


def loadKeyPair(certPath: str, keyPath: str, what: str) -> tuple[PrivateKey, x509.Certificate]:
    """
    A private key and its certificate, from PEM files (maybe the same one).

    @raise TLSConfigError: if either cannot be read, the key is encrypted, or
        they do not belong together.
    """
    certificate = loadCertificates(certPath, what)[0]
    keyData = _read(keyPath, "private key")
    try:
        key = serialization.load_pem_private_key(keyData, password=None)
    except TypeError:
        raise TLSConfigError(f"private key {keyPath} is encrypted; streamd needs it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(f"private key {keyPath} holds no PEM private key") from None
    if not isinstance(key, PrivateKey):
        raise TLSConfigError(f"private key {keyPath}: {type(key).__name__} keys cannot be used for TLS here")
    if _publicBytes(key.public_key()) != _publicBytes(certificate.public_key()):
        raise TLSConfigError(f"private key {keyPath} does not belong to certificate {certPath}")
    return key, certificate


def _trustRoot(certificates: list[x509.Certificate]) -> Any:
    return trustRootFromCertificates([Certificate(X509.from_cryptography(c)) for c in certificates])


def _publicBytes(key: Any) -> bytes:
    return key.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSConfigError(f"cannot read {what} {path}: {e.strerror}") from None


# What OpenSSL's reasons mean for a user, by words they contain.
_MEANINGS = (
    ("certificate verify failed", "the server's certificate is not from a CA we trust, or not valid now"),
    ("certificate required", "the server requires a client certificate"),
    ("unknown ca", "the server does not trust our client certificate's CA"),
    ("bad certificate", "the server refused our client certificate"),
    ("certificate unknown", "the server refused our client certificate"),
    ("wrong version number", "is the server speaking TLS?"),
)


def handshakeFailure(reason: Failure) -> str | None:
    """
    A one-line description of why a TLS handshake failed, or C{None} if
    C{reason} is not a TLS failure.
    """
    error = reason.value
    if isinstance(error, VerificationError):
        names = ", ".join(_identity(mismatch) for mismatch in error.errors)
        return f"TLS handshake failed: the server's certificate does not match host name {names}"
    if not isinstance(error, SSL.Error):
        return None
    details = error.args[0] if error.args else None
    if isinstance(details, list):
        text = "; ".join(str(detail[-1]) for detail in details if isinstance(detail, tuple) and detail[-1])
    else:
        text = str(error)
    text = text or "unknown TLS error"
    for words, meaning in _MEANINGS:
        if words in text:
            return f"TLS handshake failed: {text} ({meaning})"
    return f"TLS handshake failed: {text}"


def _identity(error: object) -> str:
    expected = getattr(error, "mismatched_id", None)
    name = getattr(expected, "hostname", None) or getattr(expected, "ip", None)
    if isinstance(name, bytes):
        return name.decode("ascii", "replace")
    return str(name) if name is not None else str(error)


__all__ = [
    "TLSConfigError",
    "clientTLS",
    "handshakeFailure",
    "loadCertificates",
    "loadKeyPair",
    "mutualTLSEndpoint",
]
