"""
The twistd plugin's command line: C{twistd [-n] streamd [options]}.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from twisted.application.service import IService
from twisted.internet.endpoints import quoteStringArgument
from twisted.python import usage

from streamd import _coerce
from streamd.auth import AccessPolicy, TokenFile
from streamd.cluster.config import DEFAULT_RETENTION, DEFAULT_SUBJECT, ClusterConfig, parseRetention
from streamd.config import ConfigError
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE, FRAMINGS, Framing
from streamd.hub import FlowControl
from streamd.protocol import DEFAULT_MAX_PARTIAL_BYTES
from streamd.seqframing import SEQ
from streamd.server import DEFAULT_AUTH_TIMEOUT, DEFAULT_HEARTBEAT, ServerConfig
from streamd.tls import isTLSListener, loadCertificates, parseDescription, serverEndpoint
from streamd.web.context import DEFAULT_HEADER_TIMEOUT

if TYPE_CHECKING:
    from streamd.service import DaemonConfig, Listen

DEFAULT_PORT = 7000
# Twisted's default listen backlog (50), and Redis's 511, overflow when
# thousands of clients reconnect at once (after a restart).  Then the kernel
# drops the handshake's last ACK of some, and a subscriber, which sends
# nothing, never retries: it waits for a stream that will never come.  4096
# is what current Linux allows (net.core.somaxconn caps it) and what Go's
# servers ask for.
LISTEN_BACKLOG = 4096
_FRAMING_PARAMETER = re.compile(r"(?<!\\):framing=([^:]*)")


def _number(
    kind: Callable[[str], Any], option: str, what: str, minimum: float, inclusive: bool = True
) -> Callable[[str], Any]:
    def coerce(value: str) -> Any:
        try:
            number = kind(value)
        except ValueError:
            number = None
        if number is None or number < minimum or (number == minimum and not inclusive):
            bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
            raise ValueError(f"--{option} must be {what}, {bound}, not {value!r}")
        return number

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


def _framing(value: str) -> Framing:
    try:
        return FRAMINGS[value]
    except KeyError:
        raise ValueError(f"unknown framing {value!r} (known: {', '.join(FRAMINGS)})") from None


def _choice(option: str, *choices: str) -> Callable[[str], str]:
    def coerce(value: str) -> str:
        if value not in choices:
            raise ValueError(f"--{option} must be {' or '.join(choices)}, not {value!r}")
        return value

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce


def _bytes(option: str) -> Callable[[str], int]:
    return _number(int, option, "a size in bytes", 0)


def _seconds(option: str, inclusive: bool = True) -> Callable[[str], float]:
    return _number(float, option, "a time in seconds", 0, inclusive)


def _withBacklog(description: str) -> str:
    """
    A C{tcp:}, C{tcp6:} or C{ssl:} endpoint description with streamd's
    L{LISTEN_BACKLOG} unless it names a backlog of its own.
    """
    args, kwargs = parseDescription(description)
    if args and args[0] in ("tcp", "tcp6", "ssl") and "backlog" not in kwargs:
        return f"{description}:backlog={LISTEN_BACKLOG}"
    return description


def _splitFraming(description: str, default: Framing) -> tuple[str, Framing]:
    """
    Take streamd's own C{framing=NAME} parameter out of an endpoint
    description: C{tcp:7010:framing=ascii10} listens on C{tcp:7010} with the
    ascii10 framing.
    """
    found = _FRAMING_PARAMETER.findall(description)
    if not found:
        return description, default
    if len(found) > 1:
        raise usage.UsageError(f"--listen {description!r} names its framing more than once")
    try:
        framing = _framing(found[0])
    except ValueError as e:
        raise usage.UsageError(f"--listen {description!r}: {e}") from None
    return _FRAMING_PARAMETER.sub("", description), framing


def _checkedEndpoint(description: str, clientCA: str | None, what: str, shown: str | None = None) -> str:
    """
    C{description} with streamd's listen backlog, once Twisted has made an
    endpoint of it.

    @param shown: the description as the error names it (default: the one
        with the backlog), after C{bad {what}}.
    """
    from twisted.internet import reactor

    endpoint = _withBacklog(description)
    try:
        serverEndpoint(reactor, endpoint, clientCA)
    except Exception as e:
        raise usage.UsageError(f"bad {what} {shown or endpoint!r}: {e}") from None
    return endpoint


class Options(usage.Options):
    """
    Options of C{twistd streamd}.
    """

    synopsis = "[options]"
    longdesc = (
        "Pushes a live stream of length-prefixed messages to every connected client, "
        "and relays what clients send to all the others."
    )

    optFlags = [
        ["no-restart", None, "Do not run an exec: or sh: source again when it exits."],
        ["read-only", None, "No client may publish; only the daemon's own sources do."],
        ["http-public-metrics", None, "/metrics and /connz answer without the --auth-token-file token."],
    ]

    optParameters = [
        ["auth-token-file", None, None, "Every client must send this file's token as its first frame."],
        ["publish-token-file", None, None, "Only clients that send this file's token may publish."],
        [
            "auth-timeout",
            None,
            None,
            f"Seconds a client has to send its --auth-token-file token (default {DEFAULT_AUTH_TIMEOUT:g}).",
            _seconds("auth-timeout", inclusive=False),
        ],
        [
            "port",
            "p",
            None,
            f"TCP port to listen on (default {DEFAULT_PORT} when no --listen is given).",
            _coerce.port(0),
        ],
        ["interface", "i", "127.0.0.1", "Address --port listens on."],
        ["client-ca", None, None, "ssl: listeners (--listen and --http) require client certificates from a CA in this PEM file."],
        ["framing", None, "int32", f"Default framing of listeners: int32, ascii10 or {SEQ.name}."],
        [
            "heartbeat",
            None,
            DEFAULT_HEARTBEAT,
            "Seconds of silence before a heartbeat (a seq PING, a WebSocket ping, an SSE comment); a client"
            " that can answer and answers none of two is cut (0: off).",
            _seconds("heartbeat"),
        ],
        [
            "seq-evicted",
            None,
            "gap",
            "What a seq, WebSocket or SSE client whose position left the --history gets: gap (a gap, then it"
            " goes on from the oldest message held) or disconnect (a goodbye).",
            _choice("seq-evicted", "gap", "disconnect"),
        ],
        ["interval", None, 1.0, "Seconds between clock ticks (> 0).", _seconds("interval", inclusive=False)],
        [
            "max-message-size",
            None,
            DEFAULT_MAX_MESSAGE_SIZE,
            "Largest message in bytes, either way.",
            _bytes("max-message-size"),
        ],
        [
            "history",
            None,
            FlowControl.history,
            "Bytes of recent messages kept for clients that are behind (the log they read from).",
            _number(int, "history", "a size in bytes", 1),
        ],
        [
            "stall-timeout",
            None,
            FlowControl.stallTimeout,
            "Seconds after which a client whose connection takes nothing is no longer waited for.",
            _seconds("stall-timeout", inclusive=False),
        ],
        [
            "max-partial-bytes",
            None,
            None,
            "Memory all clients' unfinished incoming frames may hold together; a client that "
            f"would take it over is cut (default {DEFAULT_MAX_PARTIAL_BYTES}, or twice "
            "--max-message-size if that is more).",
            _bytes("max-partial-bytes"),
        ],
        [
            "max-pending",
            None,
            None,
            "Bytes a client may be behind the newest message before it is cut at once"
            " (default: until its position leaves the --history).",
            _bytes("max-pending"),
        ],
        [
            "soft-pending",
            None,
            None,
            "Bytes a client may be behind for --soft-seconds before it is cut (default: no such limit).",
            _bytes("soft-pending"),
        ],
        [
            "soft-seconds",
            None,
            FlowControl.softSeconds,
            "Seconds a client may stay more than --soft-pending behind.",
            _seconds("soft-seconds"),
        ],
        [
            "slow-consumer",
            None,
            "disconnect",
            "disconnect: publishing clients never wait, clients pushed out of the --history are cut;"
            " block: publishing clients wait for clients that keep up, like the sources.",
            _choice("slow-consumer", "disconnect", "block"),
        ],
        [
            "max-clients",
            None,
            10_000,
            "Connections above this are closed at once.",
            _number(int, "max-clients", "a number", 1),
        ],
        [
            "idle-timeout",
            None,
            None,
            "Cut clients that send and take nothing for this many seconds.",
            _seconds("idle-timeout", inclusive=False),
        ],
        [
            "stats-interval",
            None,
            60.0,
            "Seconds between counter summaries in the log (0: off).",
            _seconds("stats-interval"),
        ],
        [
            "shutdown-timeout",
            None,
            5.0,
            "Seconds clients get to take their output at shutdown.",
            _seconds("shutdown-timeout"),
        ],
        [
            "drain",
            None,
            0.0,
            "Seconds over which clients are told goodbye at shutdown, each at a random moment, so that"
            " they do not all reconnect at once (as NATS's lame-duck mode); --shutdown-timeout follows.",
            _seconds("drain"),
        ],
        [
            "http-header-timeout",
            None,
            DEFAULT_HEADER_TIMEOUT,
            "Seconds an --http connection has to send each request's head (0: no limit).",
            _seconds("http-header-timeout"),
        ],
        [
            "restart-delay",
            None,
            1.0,
            "Seconds before an exec: or sh: source that exited is run again.",
            _seconds("restart-delay"),
        ],
        ["cluster-subject", None, DEFAULT_SUBJECT, "NATS subject the nodes of this stream share."],
        ["cluster-creds", None, None, "NATS credentials file (.creds) for --cluster."],
        [
            "cluster-user",
            None,
            None,
            "NATS user name for --cluster; the password is in --cluster-password-file.",
        ],
        ["cluster-password-file", None, None, "File holding the NATS password of --cluster-user."],
        ["cluster-token-file", None, None, "File holding a NATS authorization token for --cluster."],
        ["cluster-ca", None, None, "PEM file of the CAs the NATS servers' certificates must be signed by."],
        [
            "cluster-history",
            None,
            "core",
            "core (each node numbers its own messages) or jetstream (one JetStream stream numbers them"
            " for every node, and a node cut off catches up).",
        ],
        [
            "cluster-retention",
            None,
            None,
            f"What the JetStream stream keeps: a size, an age or both (1GiB,24h). [default: {DEFAULT_RETENTION}]",
        ],
        ["cluster-replicas", None, 1, "Copies of the JetStream stream in a NATS cluster (1-5).", int],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["source"] = []
        self["http"] = []
        self["http-origin"] = []
        self["cluster"] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """
        Parse, and as twistd's subcommand end a mistake with one line, a
        pointer to C{--help} and status 2, instead of twistd's whole usage.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise
            message = str(e).removeprefix("Parameter type enforcement failed: ")
            sys.stderr.write(f"twistd streamd: {message}\nsee twistd streamd --help\n")
            raise SystemExit(2) from None

    def opt_listen(self, description: str) -> None:
        """Listen on a Twisted endpoint (repeatable): tcp:7000:interface=0.0.0.0, unix:/run/streamd.sock, ssl:7443:privateKey=key.pem:certKey=cert.pem, ...; add :framing=ascii10 for the exercise's framing, :framing=seq for numbered messages that resume after a reconnect."""
        self["listen"].append(description)

    def opt_http(self, description: str) -> None:
        """Serve the live page, WebSocket (/ws), Server-Sent Events (/events), /metrics, /connz and /healthz on an endpoint (repeatable): tcp:8080:interface=127.0.0.1, or ssl:8443:privateKey=key.pem:certKey=cert.pem for HTTPS and WSS."""
        self["http"].append(description)

    def opt_http_origin(self, origin: str) -> None:
        """Let web pages of this origin open /ws and /events (repeatable): https://example.com:8443, or * for any. Pages of the daemon's own origin, and clients that are not pages, need no such leave."""
        if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
            raise usage.UsageError(f"--http-origin must be * or a web origin such as https://example.com, not {origin!r}")
        self["http-origin"].append(origin)

    def opt_source(self, spec: str) -> None:
        """What to stream besides clients' messages (repeatable): clock (the default), exec:COMMAND (no shell), sh:COMMAND (through /bin/sh -c), file:PATH (followed like tail -F), stdin, or none."""
        self["source"].append(spec)

    def opt_cluster(self, url: str) -> None:
        """Join the other daemons that use this NATS server (repeatable, for several servers of one NATS cluster): nats://HOST:PORT or tls://HOST:PORT. Every message published on any node reaches the clients of all of them."""
        self["cluster"].append(url)

    def postOptions(self) -> None:
        if self["cluster"]:
            _preferAsyncioReactor()
        try:
            self._translate()
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _translate(self) -> None:
        """
        Turn the options into the daemon's settings, C{self["config"]}.

        @raise ConfigError: for settings that do not fit together (a
            C{usage.UsageError} for those only options can get wrong).
        """
        if self["max-partial-bytes"] is None:
            self["max-partial-bytes"] = max(DEFAULT_MAX_PARTIAL_BYTES, 2 * self["max-message-size"])
        self["listens"] = self._listens()
        clientCA = self["client-ca"]
        self["https"] = tuple(
            _checkedEndpoint(d, clientCA if isTLSListener(d) else None, "--http endpoint", d) for d in self["http"]
        )
        sources = self["source"] or ["clock"]
        if "none" in sources:
            if len(sources) > 1:
                raise usage.UsageError("--source none cannot be combined with other sources")
            sources = []
        self["sources"] = tuple(sources)
        self["access"] = self._accessPolicy()
        self["cluster-config"] = self._clusterConfig()
        self["config"] = _daemonConfig(self)

    def _listens(self) -> tuple[Listen, ...]:
        from streamd.service import Listen

        try:
            defaultFraming = _framing(self["framing"])
        except ValueError as e:
            raise usage.UsageError(f"--framing: {e}") from None
        descriptions = list(self["listen"])
        if self["port"] is not None or not descriptions:
            port = DEFAULT_PORT if self["port"] is None else self["port"]
            interface = quoteStringArgument(self["interface"])
            descriptions.insert(0, f"tcp:{port}:interface={interface}")
        clientCA: str | None = self["client-ca"]
        if clientCA is not None:
            loadCertificates(clientCA, "--client-ca")
        listens = []
        for description in descriptions:
            endpoint, framing = _splitFraming(description, defaultFraming)
            listenCA = clientCA if isTLSListener(endpoint) else None
            endpoint = _checkedEndpoint(endpoint, listenCA, "endpoint")
            listens.append(Listen(endpoint, framing, listenCA))
        if clientCA is not None and not any(listen.clientCA for listen in listens):
            if not any(isTLSListener(description) for description in self["http"]):
                raise usage.UsageError(
                    "--client-ca needs an ssl: listener: --listen ssl:PORT:privateKey=..."
                    " or --http ssl:PORT:privateKey=..."
                )
        return tuple(listens)

    def _clusterConfig(self) -> ClusterConfig | None:
        named = [
            name
            for name in (
                "cluster-creds",
                "cluster-user",
                "cluster-password-file",
                "cluster-token-file",
                "cluster-ca",
            )
            if self[name] is not None
        ]
        if self["cluster-subject"] != DEFAULT_SUBJECT:
            named.append("cluster-subject")
        if self["cluster-history"] != "core":
            named.append("cluster-history")
        jetstream = self["cluster-history"] == "jetstream"
        for name in ("cluster-retention", "cluster-replicas"):
            if self[name] not in (None, 1) and not jetstream:
                raise usage.UsageError(f"--{name} needs --cluster-history jetstream")
        if not self["cluster"]:
            if named:
                raise usage.UsageError(f"--{named[0]} needs --cluster nats://HOST:PORT")
            return None
        config = ClusterConfig(
            servers=tuple(self["cluster"]),
            subject=self["cluster-subject"],
            creds=self["cluster-creds"],
            user=self["cluster-user"],
            passwordFile=self["cluster-password-file"],
            tokenFile=self["cluster-token-file"],
            ca=self["cluster-ca"],
            history=self["cluster-history"],
            replicas=self["cluster-replicas"],
        )
        if jetstream:
            size, age = parseRetention(self["cluster-retention"] or DEFAULT_RETENTION)
            config = replace(config, retentionBytes=size, retentionAge=age)
        config.check()
        return config

    def _accessPolicy(self) -> AccessPolicy:
        if self["auth-timeout"] is None:
            self["auth-timeout"] = DEFAULT_AUTH_TIMEOUT
        elif not self["auth-token-file"]:
            # Only clients that must send a token before reading are timed.
            raise usage.UsageError("--auth-timeout needs --auth-token-file")
        return AccessPolicy(
            auth=TokenFile(self["auth-token-file"]) if self["auth-token-file"] else None,
            publish=TokenFile(self["publish-token-file"]) if self["publish-token-file"] else None,
            readOnly=self["read-only"],
        )


def _daemonConfig(options: Options) -> DaemonConfig:
    """
    The daemon's settings, from C{options} as parsed.

    @raise ConfigError: for settings that do not fit together.
    """
    from streamd.service import DaemonConfig

    return DaemonConfig(
        listens=options["listens"],
        sources=options["sources"],
        interval=options["interval"],
        server=ServerConfig(
            maxMessageSize=options["max-message-size"],
            maxClients=options["max-clients"],
            idleTimeout=options["idle-timeout"],
            access=options["access"],
            authTimeout=options["auth-timeout"],
            maxPartialBytes=options["max-partial-bytes"],
            heartbeat=options["heartbeat"] or None,
            seqGaps=options["seq-evicted"] == "gap",
            httpOrigins=tuple(options["http-origin"]),
        ),
        flow=FlowControl(
            history=options["history"],
            stallTimeout=options["stall-timeout"],
            blockPublishers=options["slow-consumer"] == "block",
            maxBehind=options["max-pending"],
            softBehind=options["soft-pending"],
            softSeconds=options["soft-seconds"],
        ),
        shutdownTimeout=options["shutdown-timeout"],
        statsInterval=options["stats-interval"],
        restartDelay=options["restart-delay"],
        restart=not options["no-restart"],
        http=options["https"],
        httpClientCA=options["client-ca"],
        httpPublicMetrics=options["http-public-metrics"],
        httpHeaderTimeout=options["http-header-timeout"] or None,
        drain=options["drain"],
        cluster=options["cluster-config"],
    )


def _preferAsyncioReactor() -> None:
    """
    Run a cluster node on Twisted's asyncio reactor, so that nats-py shares
    its loop instead of running in a thread beside it (see
    L{streamd.cluster.loop}; that halves the cross-node latency), unless a
    reactor is already installed (C{twistd --reactor NAME}, or a test run),
    which then keeps the thread.
    """
    if "twisted.internet.reactor" not in sys.modules:
        from twisted.internet import asyncioreactor

        asyncioreactor.install()


def makeService(options: Options) -> IService:
    """
    The daemon described by C{options}.
    """
    from twisted.internet import reactor

    from streamd.service import StreamdService, freezeStartup

    if not reactor.running:
        # twistd runs the reactor once this returns.
        reactor.callWhenRunning(freezeStartup)
    return StreamdService(reactor, options["config"])
