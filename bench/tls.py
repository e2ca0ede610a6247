"""
TLS in the benchmark: the self-signed certificate a daemon under test
presents on its C{ssl:} listeners, and its subscribers' side of the
connection, Python's C{ssl} over a plain socket, which checks that
certificate as a browser checks a server's.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HOST = "127.0.0.1"
"""
The one name the certificate is valid for: where the bench's servers listen.
"""
KEY_FILE = "tls.key"
CERTIFICATE_FILE = "tls.pem"
VALID_DAYS = 2


def selfSigned(directory: Path) -> tuple[Path, Path]:
    """
    Write a new private key and a self-signed certificate for L{HOST} (an
    ECDSA P-256 key, as Let's Encrypt issues by default) to C{directory}.

    @return: the key's file and the certificate's.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "streamd bench")])
    identifier = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    address = x509.IPAddress(ipaddress.ip_address(HOST))
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName([address]), critical=False)
        .add_extension(identifier, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(identifier), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    keyFile, certificateFile = directory / KEY_FILE, directory / CERTIFICATE_FILE
    pkcs8 = serialization.PrivateFormat.PKCS8
    keyFile.write_bytes(key.private_bytes(serialization.Encoding.PEM, pkcs8, serialization.NoEncryption()))
    certificateFile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return keyFile, certificateFile


def clientContext(certificate: Path) -> ssl.SSLContext:
    """
    A client's TLS settings, Python's defaults (TLS 1.2 or 1.3, the
    server's certificate and name checked), trusting only C{certificate}.
    """
    return ssl.create_default_context(cafile=str(certificate))


def secured(sock: socket.socket, certificate: Path) -> ssl.SSLSocket:
    """
    The connected blocking C{sock} as a TLS connection to L{HOST}, once the
    handshake is done.

    @raise ssl.SSLError: if the server's certificate is not C{certificate}.
    """
    return clientContext(certificate).wrap_socket(sock, server_hostname=HOST)
