"""
Everything the daemon is started with, as config objects that check
themselves: L{DaemonConfig} and its parts.

Every rule is checked when an object is made (in C{__post_init__}, without
touching a file); L{DaemonConfig.checkFiles} then reads what the settings
name (certificates, keys, CAs, secrets) and builds every endpoint on a
C{MemoryReactor}.  Either raises L{ConfigError}, whose one line names the
command-line options concerned, whoever made the object: C{twistd
streamd}'s options or a program embedding the daemon.
"""

from __future__ import annotations

import importlib.util
import re
import ssl
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.testing import MemoryReactor

from streamd._errors import ConfigError
from streamd.auth import OPEN, AccessPolicy, TokenFileError, readToken
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, INT32, Framing
from streamd.listen.endpoints import StreamdEndpoint, describeError, given
from streamd.names import DEFAULT, checkName
from streamd.protocol import DEFAULT_MAX_PARTIAL_BYTES

MiB = 1024 * 1024
DEFAULT_PORT = 7000
DEFAULT_AUTH_TIMEOUT = 5.0
DEFAULT_HEARTBEAT = 15.0
DEFAULT_HEADER_TIMEOUT = 5.0
"""
Seconds an HTTP connection has to send a request's head, from its
connection or the end of the previous answer (C{--http-header-timeout}).
"""
DEFAULT_SUBJECT = "streamd"
DEFAULT_RETENTION = "64MiB"
RECONNECT_WAIT = 2.0
HISTORIES = ("core", "jetstream")
MIN_INTERVAL = 0.001
"""
The shortest C{--interval}: a thousand clock ticks a second.
"""
MAX_DRAIN = 3600.0
"""
The longest C{--drain}: an hour, so that a daemon told to stop stops.
"""


def _atLeast(option: str, value: float | None, minimum: float, what: str = "") -> None:
    """
    Refuse C{value} (unless C{None}: not set) below C{minimum}.
    """
    if value is not None and value < minimum:
        raise ConfigError(f"--{option} must be at least {minimum:g}{what}, not {value:g}")


def _positive(option: str, value: float | None) -> None:
    """
    Refuse C{value} (unless C{None}: not set) that is not above 0.
    """
    if value is not None and not value > 0:
        raise ConfigError(f"--{option} must be greater than 0, not {value:g}")


@dataclass(frozen=True)
class FlowControl:
    """
    How far subscribers may fall behind, and who waits for them.

    @ivar history: bytes of published messages the log holds.
    @ivar stallTimeout: seconds after which a subscriber whose connection
        took nothing is no longer waited for.
    @ivar blockPublishers: whether clients that publish wait, like the
        daemon's own sources, for subscribers that keep up.
    @ivar maxBehind: bytes behind the head above which a subscriber is cut,
        or C{None} for only when its position leaves the log.
    @ivar softBehind: bytes behind the head above which a subscriber is cut
        if it stays there for C{softSeconds}, or C{None} for never.
    """

    history: int = 64 * MiB
    stallTimeout: float = 1.0
    blockPublishers: bool = False
    maxBehind: int | None = None
    softBehind: int | None = None
    softSeconds: float = 10.0

    def __post_init__(self) -> None:
        if self.history < 1:
            raise ConfigError(f"--history must be at least 1 byte, not {self.history}")
        _positive("stall-timeout", self.stallTimeout)
        _atLeast("max-pending", self.maxBehind, 0)
        _atLeast("soft-pending", self.softBehind, 0)
        _atLeast("soft-seconds", self.softSeconds, 0)
        if self.softBehind is not None and self.maxBehind is not None and self.softBehind > self.maxBehind:
            raise ConfigError("--soft-pending must not be larger than --max-pending")


@dataclass(frozen=True)
class StreamMetrics:
    """
    Which streams have series of their own in C{/metrics}: the C{top} that
    have published the most messages, and the C{named} ones, so that many
    streams never make as many series.
    """

    top: int = 10
    named: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _atLeast("metrics-streams", self.top, 0)
        for name in self.named:
            _streamName("--metrics-stream", name)


@dataclass(frozen=True)
class ServerConfig:
    """
    The per-connection rules of the daemon.

    @ivar idleTimeout: seconds in which a client sent nothing and took
        nothing (its TCP stack acknowledged no new bytes; where the kernel
        does not tell, we handed it none) after which it is cut, or C{None}
        for never.
    @ivar authTimeout: seconds a client has to send its token, when the
        access policy expects one.
    @ivar maxPartialBytes: memory that all clients' unfinished incoming
        frames may hold together; a client that would take it over is cut.
    @ivar heartbeat: seconds of silence after which a client is sent a
        heartbeat (a C{seq} PING, a WebSocket ping, an SSE comment), or
        C{None} for never.
    @ivar seqGaps: whether a client whose position left the history is told
        the gap and goes on from the oldest message held (rather than being
        cut), where its protocol can tell a gap (C{seq}, WebSocket, SSE).
    @ivar httpOrigins: the web origins, besides the daemon's own, whose
        pages may open its WebSocket and event streams (C{*}: any).
    @ivar metrics: the streams C{/metrics} shows one by one.
    """

    maxMessageSize: int = DEFAULT_MAX_MESSAGE_SIZE
    maxClients: int = 10_000
    idleTimeout: float | None = None
    access: AccessPolicy = OPEN
    authTimeout: float = DEFAULT_AUTH_TIMEOUT
    maxPartialBytes: int = DEFAULT_MAX_PARTIAL_BYTES
    heartbeat: float | None = DEFAULT_HEARTBEAT
    seqGaps: bool = True
    httpOrigins: tuple[str, ...] = ()
    metrics: StreamMetrics = field(default_factory=StreamMetrics)

    def __post_init__(self) -> None:
        if self.maxMessageSize > INT32.maxLength:
            raise ConfigError(f"--max-message-size must be at most {INT32.maxLength} (4 GiB - 1)")
        _atLeast("max-message-size", self.maxMessageSize, 1, " byte")
        _atLeast("max-clients", self.maxClients, 1)
        _positive("idle-timeout", self.idleTimeout)
        _positive("auth-timeout", self.authTimeout)
        _positive("heartbeat", self.heartbeat)
        for origin in self.httpOrigins:
            if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
                raise ConfigError(
                    f"--http-origin must be * or a web origin such as https://example.com, not {origin!r}"
                )
        roomForTwo = 2 * self.maxMessageSize
        if self.maxPartialBytes < roomForTwo:
            raise ConfigError(
                f"--max-partial-bytes must be at least twice --max-message-size ({roomForTwo}), "
                "or a largest message could be cut on its way in"
            )


@dataclass(frozen=True)
class Listen:
    """
    One endpoint to listen on, the framing its clients speak, and for an
    C{ssl:} endpoint the PEM file of the CAs its clients' certificates must
    be signed by (mutual TLS), if it asks for them.

    @ivar endpoint: a Twisted server endpoint description, without
        streamd's own parameters.
    """

    endpoint: str
    framing: Framing = INT32
    clientCA: str | None = None
    stream: str = DEFAULT

    @property
    def description(self) -> str:
        """
        This listener as a C{streamd:} endpoint description, from which
        C{serverFromString} makes its endpoint (see L{streamd.listen.endpoints}).
        """
        description = f"streamd:{self.endpoint}:framing={self.framing.name}"
        if self.clientCA is not None:
            description += f":clientCA={quoteStringArgument(self.clientCA)}"
        if self.stream != DEFAULT:
            description += f":stream={self.stream}"
        return description

    @classmethod
    def parse(cls, description: str, framing: Framing = INT32, clientCA: str | None = None) -> Listen:
        """
        The listener a C{--listen} description names: C{framing} unless it
        says C{:framing=NAME}, C{clientCA} if it is an C{ssl:} one.

        @raise ConfigError: for a description that does not parse.
        """
        endpoint = _endpoint(f"streamd:{description}", description)
        return cls(
            endpoint.description,
            endpoint.framing or framing,
            clientCA if endpoint.tls else None,
            endpoint.stream or DEFAULT,
        )


def httpEndpoint(description: str) -> str:
    """
    The Twisted description of a C{--http} endpoint, with streamd's backlog.

    @raise ConfigError: for a description that does not parse, or names a
        framing or client CA, which only C{--listen} takes.
    """
    endpoint = _endpoint(f"streamd:{description}", description, "--http endpoint")
    if endpoint.framing is not None or endpoint.clientCA is not None or endpoint.stream is not None:
        raise ConfigError(f"--http {description!r}: framing=, clientCA= and stream= go with --listen")
    return endpoint.description


def _endpoint(description: str, shown: str, what: str = "endpoint", build: bool = False) -> StreamdEndpoint:
    """
    The L{StreamdEndpoint} of a C{streamd:} description, as
    C{serverFromString} makes it on a C{MemoryReactor} (nothing listens).

    @param shown: the description as the user wrote it, for the message,
        after C{bad {what}}.
    @param build: also build the endpoint it wraps, which reads the files
        it names.
    @raise ConfigError: for a description that does not parse, or (with
        C{build}) an endpoint that cannot be made.
    """
    try:
        endpoint = serverFromString(MemoryReactor(), description)
        assert isinstance(endpoint, StreamdEndpoint)
        if build:
            endpoint.build()
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"bad {what} {given(shown)!r}: {describeError(e)}") from None
    return endpoint


@dataclass(frozen=True)
class ClusterConfig:
    """
    How this node joins the others.  Secrets live in files, read when the
    daemon connects (L{connectOptions}), never on the command line.

    @ivar servers: NATS URLs (C{nats://HOST:PORT}, C{tls://HOST:PORT}).
    @ivar subject: the prefix of the NATS subjects the nodes share: stream
        C{NAME} travels on C{PREFIX.NAME}.
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
    @ivar keyFile: a file holding the key every node signs its messages
        with, and without which a message from NATS is dropped.
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
    keyFile: str | None = None

    def __post_init__(self) -> None:
        for url in self.servers:
            scheme, _, rest = url.partition("://")
            if scheme not in ("nats", "tls") or not rest:
                raise ConfigError(
                    f"--cluster {redacted(url)!r} is not a nats://HOST:PORT or tls://HOST:PORT URL"
                )
        subject = self.subject
        if not subject or any(c in subject for c in " \t\r\n*>") or ".." in f".{subject}.":
            raise ConfigError(
                f"--cluster-subject {subject!r} is not a plain NATS subject (a prefix: a.b, not a.b.)"
            )
        if self.history not in HISTORIES:
            raise ConfigError(f"--cluster-history must be core or jetstream, not {self.history!r}")
        if not 1 <= self.replicas <= 5:
            raise ConfigError(f"--cluster-replicas must be from 1 to 5, not {self.replicas}")
        if not self.jetstream:
            for option, isSet in (
                ("cluster-retention", (self.retentionBytes, self.retentionAge) != (None, None)),
                ("cluster-replicas", self.replicas != 1),
            ):
                if isSet:
                    raise ConfigError(f"--{option} needs --cluster-history jetstream")
        if not self.servers:
            for option, named in (
                ("cluster-creds", self.creds),
                ("cluster-user", self.user),
                ("cluster-password-file", self.passwordFile),
                ("cluster-token-file", self.tokenFile),
                ("cluster-ca", self.ca),
                ("cluster-key-file", self.keyFile),
                ("cluster-subject", None if self.subject == DEFAULT_SUBJECT else self.subject),
                ("cluster-history", None if self.history == "core" else self.history),
            ):
                if named is not None:
                    raise ConfigError(f"--{option} needs --cluster nats://HOST:PORT")
        if (self.user is None) != (self.passwordFile is None):
            raise ConfigError("--cluster-user and --cluster-password-file go together")
        if sum(x is not None for x in (self.creds, self.user, self.tokenFile)) > 1:
            raise ConfigError("give one of --cluster-creds, --cluster-user or --cluster-token-file")

    @property
    def jetstream(self) -> bool:
        """
        Whether a JetStream stream numbers the messages.
        """
        return self.history == "jetstream"

    @property
    def streamName(self) -> str:
        """
        The JetStream stream's name, made from the subjects' prefix (a
        stream name may not hold dots).
        """
        return "streamd-" + self.subject.replace(".", "_")

    @property
    def shownServers(self) -> str:
        """
        The servers, as the log and error messages show them: without the
        user and password a URL may carry.
        """
        return " ".join(map(redacted, self.servers))

    def checkFiles(self) -> None:
        """
        @raise ConfigError: if nats-py is missing, or a file named cannot be
            read.
        """
        if importlib.util.find_spec("nats") is None:
            raise ConfigError("--cluster needs nats-py: pip install 'streamd[cluster]'")
        for option, path in (
            ("--cluster-creds", self.creds),
            ("--cluster-password-file", self.passwordFile),
            ("--cluster-token-file", self.tokenFile),
            ("--cluster-ca", self.ca),
            ("--cluster-key-file", self.keyFile),
        ):
            if path is not None:
                _secret(option, path)
        if self.ca is not None:
            try:
                ssl.create_default_context(cafile=self.ca)
            except ssl.SSLError as e:
                raise ConfigError(f"--cluster-ca {self.ca}: no PEM certificate in it ({e.reason})") from None

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
            options["tls"] = ssl.create_default_context(cafile=self.ca)
        return options

    def key(self) -> bytes | None:
        """
        The nodes' shared signing key, read from its file now, if there is
        one.
        """
        return None if self.keyFile is None else _secret("--cluster-key-file", self.keyFile).encode()


_SIZE_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RETENTION_PART = re.compile(r"(\d+(?:\.\d+)?)([A-Za-z]+)")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:/+")


def redacted(url: str) -> str:
    """
    C{url} without the credentials it may carry: all before its last C{@}
    but a scheme, mistyped or not, is hidden (C{nats://user:secret@host} is
    shown as C{nats://***@host}, C{nats:/user:secret@host} as
    C{nats:/***@host}, C{user:secret@host} as C{***@host}): a password
    never reaches the log, an error message or C{/healthz}.
    """
    if "@" not in url:
        return url
    scheme = _SCHEME.match(url)
    return f"{scheme.group() if scheme else ''}***@{url.rpartition('@')[2]}"


def parseRetention(text: str) -> tuple[int | None, float | None]:
    """
    C{--cluster-retention}: a size (C{64MiB}), an age (C{1h}), or both,
    comma-separated (C{1GiB,24h}); the stream drops its oldest messages when
    either is reached.  Sizes in C{B}, C{KiB}, C{MiB}, C{GiB}, C{TiB}; ages
    in C{s}, C{m}, C{h}, C{d}.

    @return: the bytes and the seconds, either C{None} if not given.
    @raise ConfigError: if C{text} says anything else.
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
            raise ConfigError(
                f"--cluster-retention {text!r}: give a size (64MiB), an age (1h) or both (1GiB,24h);"
                " units B KiB MiB GiB TiB, s m h d"
            )
    if size == 0 or age == 0:
        raise ConfigError(f"--cluster-retention {text!r}: a stream that keeps nothing cannot serve")
    return size, age


def _secret(option: str, path: str) -> str:
    try:
        return readToken(path, option).decode()
    except TokenFileError as e:
        raise ConfigError(str(e)) from None


@dataclass(frozen=True)
class Shortcuts:
    """
    The shortcuts through Twisted's internals (L{streamd._internals}), each
    of which can be turned off; all are also off on a Twisted release
    outside the tested range, or with C{STREAMD_FASTWRITE=0}.

    @ivar fastWrite: send to a TCP or UNIX client's socket at once
        (L{streamd.fanout.socketcursor}), rather than through Twisted's buffer.
    @ivar bigReads: read up to 512 KiB from a client that sends faster than
        it is read, not 64 KiB, sized to end on a frame on the stream listeners
        (L{streamd.reads}).
    @ivar acceptFirst: accept every waiting connection before setting any
        up (L{streamd.listen.accept}).
    """

    fastWrite: bool = True
    bigReads: bool = True
    acceptFirst: bool = True


@dataclass(frozen=True)
class StreamsConfig:
    """
    The daemon's named streams: at most C{maxStreams}; with C{declaredOnly}
    only the C{declared} ones (and those its sources and listeners name);
    an idle one forgotten after C{idleTimeout} seconds, if given; each
    holding at most C{streamHistory} bytes of the C{--history} all share
    (by default, all of it).
    """

    maxStreams: int = 10_000
    declared: tuple[str, ...] = ()
    declaredOnly: bool = False
    idleTimeout: float | None = None
    streamHistory: int | None = None

    def __post_init__(self) -> None:
        _atLeast("max-streams", self.maxStreams, 1)
        _positive("stream-idle", self.idleTimeout)
        _atLeast("stream-history", self.streamHistory, 1)
        for name in self.declared:
            _streamName("--declare", name)


def _streamName(option: str, name: str) -> str:
    try:
        return checkName(name)
    except ValueError as e:
        raise ConfigError(f"{option}: {e}") from None


def sourceStream(value: str) -> tuple[str, str]:
    """
    The stream a C{--source} value feeds, and its source: C{NAME=SPEC}, or
    a bare C{SPEC} for C{default} (a C{=} after a C{:} is the spec's own,
    as in C{sh:A=1 ./feed}).

    @raise ConfigError: for a bad stream name.
    """
    name, equals, spec = value.partition("=")
    if not equals or ":" in name:
        return DEFAULT, value
    return _streamName("--source", name), spec


FSYNC_POLICIES = ("always", "everysec", "no")


@dataclass(frozen=True)
class DurableConfig:
    """
    Where and how the streams' histories are kept on disk.

    @ivar dataDir: the C{--data-dir}, or C{None} to keep them in memory only.
    @ivar fsync: when writes are synced to the disk (C{--fsync}): always,
        everysec or no.
    @ivar historyAge: seconds after which a message leaves the history
        (C{--history-age}), or C{None} for no such limit.
    """

    dataDir: str | None = None
    fsync: str = "everysec"
    historyAge: float | None = None

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_POLICIES:
            raise ConfigError(f"--fsync must be one of {', '.join(FSYNC_POLICIES)}, not {self.fsync!r}")
        _positive("history-age", self.historyAge)


@dataclass(frozen=True)
class DaemonConfig:
    """
    Everything the daemon is started with.

    @ivar clientCA: the C{--client-ca} file, which the C{ssl:} listeners in
        C{listens} and in C{http} use.
    @ivar http: the C{--http} endpoint descriptions.
    @ivar httpHeaderTimeout: seconds an HTTP connection has to send each
        request's head (C{--http-header-timeout}), or C{None} for no limit.
    @ivar drain: seconds over which the clients are told goodbye at
        shutdown (C{--drain}), so that they do not all come back at once.
    @ivar httpCompress: the shortest stream message compressed for the
        WebSocket clients that negotiate permessage-deflate
        (C{--http-compress}), or C{None} for no compression.
    """

    listens: tuple[Listen, ...] = (Listen(f"tcp:{DEFAULT_PORT}:interface=127.0.0.1"),)
    sources: tuple[str, ...] = ("clock",)
    interval: float = 1.0
    server: ServerConfig = field(default_factory=ServerConfig)
    flow: FlowControl = field(default_factory=FlowControl)
    shutdownTimeout: float = 5.0
    statsInterval: float = 60.0
    restartDelay: float = 1.0
    restart: bool = True
    http: tuple[str, ...] = ()
    httpPublicMetrics: bool = False
    httpHeaderTimeout: float | None = DEFAULT_HEADER_TIMEOUT
    httpCompress: int | None = None
    drain: float = 0.0
    cluster: ClusterConfig | None = None
    clientCA: str | None = None
    shortcuts: Shortcuts = field(default_factory=Shortcuts)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    durable: DurableConfig = field(default_factory=DurableConfig)

    def __post_init__(self) -> None:
        if self.durable.dataDir is not None and self.cluster is not None:
            raise ConfigError(
                "--data-dir and --cluster cannot be combined yet: a cluster's numbers are the cluster's"
            )
        # The sources import the hub, which imports this module.
        from streamd.sources import parseSource

        for value in self.sources:
            parseSource(sourceStream(value)[1])
        _atLeast("interval", self.interval, MIN_INTERVAL, " s")
        for option, seconds in (
            ("shutdown-timeout", self.shutdownTimeout),
            ("stats-interval", self.statsInterval),
            ("restart-delay", self.restartDelay),
            ("drain", self.drain),
        ):
            _atLeast(option, seconds, 0)
        if self.drain > MAX_DRAIN:
            raise ConfigError(f"--drain must be at most {MAX_DRAIN:g} s (an hour), not {self.drain:g}")
        _positive("http-header-timeout", self.httpHeaderTimeout)
        _atLeast("http-compress", self.httpCompress, 1, " byte")
        tlsWeb = any(_endpoint(f"streamd:{description}", description).tls for description in self.http)
        if self.clientCA is not None and not tlsWeb and not any(listen.clientCA for listen in self.listens):
            raise ConfigError(
                "--client-ca needs an ssl: listener: --listen ssl:PORT:privateKey=... or --http ssl:PORT:..."
            )

    @property
    def declaredStreams(self) -> tuple[str, ...]:
        """
        The streams that exist from the start: C{--declare}'s, and those
        the sources and listeners name.
        """
        names = [*self.streams.declared, *(sourceStream(value)[0] for value in self.sources)]
        names += [listen.stream for listen in self.listens]
        return tuple(dict.fromkeys(names))

    def httpDescription(self, description: str) -> str:
        """
        The C{streamd:} endpoint description of the C{--http} endpoint
        C{description}: an C{ssl:} one requires client certificates from
        the C{--client-ca} file, as the C{ssl:} listeners of C{--listen} do.
        """
        streamd = f"streamd:{description}"
        if self.clientCA is not None and _endpoint(streamd, description).tls:
            streamd += f":clientCA={quoteStringArgument(self.clientCA)}"
        return streamd

    def checkFiles(self) -> None:
        """
        Build every listener's endpoint on a C{MemoryReactor}, which reads
        the keys and certificates it names, and read every other file the
        settings name.

        @raise ConfigError: for an endpoint that cannot be made, or a file
            that cannot be used.
        """
        for listen in self.listens:
            _endpoint(listen.description, listen.endpoint, build=True)
        for description in self.http:
            _endpoint(self.httpDescription(description), description, "--http endpoint", build=True)
        if self.cluster is not None:
            self.cluster.checkFiles()
