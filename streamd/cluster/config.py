"""
What the C{--cluster*} options say, and the nats-py connect arguments they
make.  Secrets live in files, read when the daemon connects, never on the
command line.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

from streamd.auth import TokenFileError, readToken
from streamd.config import ConfigError

DEFAULT_SUBJECT = "streamd.default"
RECONNECT_WAIT = 2.0


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
    """

    servers: tuple[str, ...]
    subject: str = DEFAULT_SUBJECT
    creds: str | None = None
    user: str | None = None
    passwordFile: str | None = None
    tokenFile: str | None = None
    ca: str | None = None
    reconnectWait: float = RECONNECT_WAIT

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
                    f"--cluster {url!r} is not a nats://HOST:PORT or tls://HOST:PORT URL"
                )
        if not self.subject or any(c in self.subject for c in " \t\r\n*>") or ".." in self.subject:
            raise ClusterConfigError(f"--cluster-subject {self.subject!r} is not a plain NATS subject")
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


def _secret(option: str, path: str) -> str:
    try:
        return readToken(path, option).decode()
    except TokenFileError as e:
        raise ClusterConfigError(str(e)) from None
