"""
What the C{--cluster*} options say, and the nats-py connect arguments they
make.  Secrets live in files, read when the daemon connects, never on the
command line.
"""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from typing import Any

from streamd.auth import TokenFileError, readToken
from streamd.config import ConfigError

DEFAULT_SUBJECT = "streamd.default"
RECONNECT_WAIT = 2.0
HISTORIES = ("core", "jetstream")
DEFAULT_RETENTION = "64MiB"

_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RETENTION_PART = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]+)")


class ClusterConfigError(ConfigError):
    """
    A C{--cluster*} option is wrong; the str says which and why.
    """


@dataclass(frozen=True)
class ClusterConfig:
    """
    How this node joins the others.

    @ivar servers: NATS URLs (C{nats://HOST:PORT}, C{tls://HOST:PORT}).
    @ivar subject: the NATS subject the nodes of one stream share.
    @ivar creds: a NATS C{.creds} file (JWT and NKey seed).
    @ivar user: a user name, with the password in C{passwordFile}.
    @ivar tokenFile: a file holding an authorization token.
    @ivar ca: PEM CAs the NATS servers' certificates must be signed by.
    @ivar reconnectWait: seconds between two tries of a NATS server.
    @ivar history: C{core} (each node numbers its own messages) or
        C{jetstream} (a JetStream stream numbers them for every node).
    @ivar retentionBytes: bytes the JetStream stream keeps, or C{None}.
    @ivar retentionAge: seconds the JetStream stream keeps a message, or
        C{None}.
    @ivar replicas: copies of the JetStream stream in a NATS cluster.
    """

    servers: tuple[str, ...]
    subject: str = DEFAULT_SUBJECT
    creds: str | None = None
    user: str | None = None
    passwordFile: str | None = None
    tokenFile: str | None = None
    ca: str | None = None
    reconnectWait: float = RECONNECT_WAIT
    history: str = "core"
    retentionBytes: int | None = None
    retentionAge: float | None = None
    replicas: int = 1

    @property
    def jetstream(self) -> bool:
        """
        Whether a JetStream stream numbers the messages.
        """
        return self.history == "jetstream"

    @property
    def streamName(self) -> str:
        """
        The JetStream stream's name, made from the subject (a stream name
        may not hold dots).
        """
        return "streamd-" + self.subject.replace(".", "_")

    @property
    def shownServers(self) -> str:
        """
        The servers, as the log and error messages show them: without the
        user and password a URL may carry.
        """
        return " ".join(map(redacted, self.servers))

    def check(self) -> None:
        """
        @raise ClusterConfigError: if an option is malformed or a file named
            cannot be read.
        """
        if importlib.util.find_spec("nats") is None:
            raise ClusterConfigError("--cluster needs nats-py: pip install 'streamd[cluster]'")
        for url in self.servers:
            scheme, _, rest = url.partition("://")
            if scheme not in ("nats", "tls") or not rest:
                raise ClusterConfigError(
                    f"--cluster {redacted(url)!r} is not a nats://HOST:PORT or tls://HOST:PORT URL"
                )
        if not self.subject or any(c in self.subject for c in " \t\r\n*>") or ".." in self.subject:
            raise ClusterConfigError(f"--cluster-subject {self.subject!r} is not a plain NATS subject")
        if self.history not in HISTORIES:
            raise ClusterConfigError(f"--cluster-history must be core or jetstream, not {self.history!r}")
        if not 1 <= self.replicas <= 5:
            raise ClusterConfigError(f"--cluster-replicas must be from 1 to 5, not {self.replicas}")
        if (self.user is None) != (self.passwordFile is None):
            raise ClusterConfigError("--cluster-user and --cluster-password-file go together")
        if sum(x is not None for x in (self.creds, self.user, self.tokenFile)) > 1:
            raise ClusterConfigError("give one of --cluster-creds, --cluster-user or --cluster-token-file")
        for option, path in (
            ("--cluster-creds", self.creds),
            ("--cluster-password-file", self.passwordFile),
            ("--cluster-token-file", self.tokenFile),
            ("--cluster-ca", self.ca),
        ):
            if path is not None:
                _secret(option, path)
        if self.ca is not None:
            import ssl

            try:
                ssl.create_default_context(cafile=self.ca)
            except ssl.SSLError as e:
                raise ClusterConfigError(
                    f"--cluster-ca {self.ca}: no PEM certificate in it ({e.reason})"
                ) from None

    def connectOptions(self) -> dict[str, Any]:
        """
        nats-py C{connect} arguments for the credentials and TLS, with the
        secrets read from their files now.
        """
        options: dict[str, Any] = {}
        if self.creds is not None:
            options["user_credentials"] = self.creds
        if self.user is not None and self.passwordFile is not None:
            options["user"] = self.user
            options["password"] = _secret("--cluster-password-file", self.passwordFile)
        if self.tokenFile is not None:
            options["token"] = _secret("--cluster-token-file", self.tokenFile)
        if self.ca is not None:
            import ssl

            options["tls"] = ssl.create_default_context(cafile=self.ca)
        return options


def parseRetention(text: str) -> tuple[int | None, float | None]:
    """
    C{--cluster-retention}: a size (C{64MiB}), an age (C{1h}), or both,
    comma-separated (C{1GiB,24h}); the stream drops its oldest messages when
    either is reached.  Sizes in C{B}, C{KiB}, C{MiB}, C{GiB}, C{TiB}; ages
    in C{s}, C{m}, C{h}, C{d}.

    @return: the bytes and the seconds, either C{None} if not given.
    @raise ClusterConfigError: if C{text} says anything else.
    """
    size: int | None = None
    age: float | None = None
    for part in text.split(","):
        found = _RETENTION_PART.fullmatch(part.strip())
        unit = found.group(2) if found else ""
        if found and unit in _SIZE_UNITS and size is None:
            size = int(float(found.group(1)) * _SIZE_UNITS[unit])
        elif found and unit in _AGE_UNITS and age is None:
            age = float(found.group(1)) * _AGE_UNITS[unit]
        else:
            raise ClusterConfigError(
                f"--cluster-retention {text!r}: give a size (64MiB), an age (1h) or both (1GiB,24h);"
                " units B KiB MiB GiB TiB, s m h d"
            )
    if size == 0 or age == 0:
        raise ClusterConfigError(f"--cluster-retention {text!r}: a stream that keeps nothing cannot serve")
    return size, age


def _secret(option: str, path: str) -> str:
    try:
        return readToken(path, option).decode()
    except TokenFileError as e:
        raise ClusterConfigError(str(e)) from None


def redacted(url: str) -> str:
    """
    C{url} without the credentials it may carry (C{nats://user:secret@host}
    is shown as C{nats://***@host}): a password never reaches the log, an
    error message or C{/healthz}.
    """
    scheme, separator, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}{separator}***@{authority.rpartition('@')[2]}{slash}{path}"
