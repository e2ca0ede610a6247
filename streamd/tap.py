"""
The twistd plugin's command line: C{twistd [-n] streamd [options]}.  L{Options}
turns it into one L{streamd.config.DaemonConfig}, which checks itself, and
imports no reactor; L{makeService} makes the daemon of it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from twisted.application.service import IService
from twisted.internet.endpoints import quoteStringArgument
from twisted.python import usage

from streamd import _coerce, config
from streamd.durableoptions import DurableOptions
from streamd.framing import DEFAULT_MAX_MESSAGE_SIZE
from streamd.protocol import DEFAULT_MAX_PARTIAL_BYTES
from streamd.seqframing import FRAMINGS
from streamd.streamoptions import StreamsOptions

_seconds, _bytes = _coerce.seconds, _coerce.size
_FLOW = config.FlowControl()


def _repeatable(name: str, doc: str) -> Callable[[usage.Options, str], None]:
    """The handler of a repeatable option C{--NAME}, documented by C{doc}."""

    def handler(self: usage.Options, value: str) -> None:
        self[name].append(value)

    handler.__doc__ = doc
    return handler


class Options(StreamsOptions, DurableOptions):
    """Options of C{twistd streamd}."""

    synopsis = "[options]"
    longdesc = "Pushes a live stream of length-prefixed messages to every connected client, and relays what clients send to all the others."

    optFlags = [
        ["no-restart", None, "Do not run an exec: or sh: source again when it exits."],
        ["read-only", None, "No client may publish; only the daemon's own sources do."],
        ["http-public-metrics", None, "/metrics and /connz answer without the --auth-token-file token."],
        ["no-fast-write", None, "Write to clients through Twisted's buffer, not straight to their sockets."],
        ["no-big-reads", None, "Read from clients 64 KiB at a time (Twisted's size), never up to 512 KiB."],
        ["no-accept-first", None, "Accept connections with Twisted's own TCP port."],
    ]

    optParameters = [
        ["auth-token-file", None, None, "Every client must send this file's token as its first frame."],
        ["publish-token-file", None, None, "Only clients that send this file's token may publish."],
        ["auth-timeout", None, None, f"Seconds a client has to send its token, with --auth-token-file or --access-file (default {config.DEFAULT_AUTH_TIMEOUT:g}).", _seconds("auth-timeout", 0, inclusive=False)],
        ["port", "p", None, f"TCP port to listen on (default {config.DEFAULT_PORT} when no --listen is given).", _coerce.port(0)],
        ["interface", "i", "127.0.0.1", "Address --port listens on."],
        ["client-ca", None, None, "ssl: listeners (--listen and --http) require client certificates from a CA in this PEM file."],
        ["framing", None, "int32", "Default framing of listeners: int32, ascii10 or seq.", _coerce.choice("framing", *FRAMINGS)],
        ["heartbeat", None, config.DEFAULT_HEARTBEAT, "Seconds of silence before a heartbeat (a seq PING, a WebSocket ping, an SSE comment); a client that can answer and answers none of two is cut (0: off).", _seconds("heartbeat")],
        ["seq-evicted", None, "gap", "What a seq, WebSocket or SSE client whose position left the --history gets: gap (a gap, then it goes on from the oldest message held) or disconnect (a goodbye).", _coerce.choice("seq-evicted", "gap", "disconnect")],
        ["interval", None, 1.0, f"Seconds between clock ticks (at least {config.MIN_INTERVAL:g}).", _seconds("interval", config.MIN_INTERVAL)],
        ["max-message-size", None, DEFAULT_MAX_MESSAGE_SIZE, "Largest message in bytes, either way.", _bytes("max-message-size", 1)],
        ["history", None, _FLOW.history, "Bytes of recent messages kept for clients that are behind (the log they read from).", _bytes("history", 1)],
        ["stall-timeout", None, _FLOW.stallTimeout, "Seconds after which a client whose connection takes nothing is no longer waited for.", _seconds("stall-timeout", 0, inclusive=False)],
        ["max-partial-bytes", None, None, f"Memory all clients' unfinished incoming frames may hold together; a client that would take it over is cut (default {DEFAULT_MAX_PARTIAL_BYTES}, or twice --max-message-size if that is more).", _bytes("max-partial-bytes")],
        ["max-pending", None, None, "Bytes a client may be behind the newest message before it is cut at once (default: until its position leaves the --history).", _bytes("max-pending")],
        ["soft-pending", None, None, "Bytes a client may be behind for --soft-seconds before it is cut (default: no such limit).", _bytes("soft-pending")],
        ["soft-seconds", None, _FLOW.softSeconds, "Seconds a client may stay more than --soft-pending behind.", _seconds("soft-seconds")],
        ["slow-consumer", None, "disconnect", "disconnect: publishing clients never wait, clients pushed out of the --history are cut; block: publishing clients wait for clients that keep up, like the sources.", _coerce.choice("slow-consumer", "disconnect", "block")],
        ["max-clients", None, config.ServerConfig.maxClients, "Connections above this are closed at once.", _coerce.count("max-clients", 1)],
        ["idle-timeout", None, None, "Cut clients that send and take nothing for this many seconds.", _seconds("idle-timeout", 0, inclusive=False)],
        ["stats-interval", None, 60.0, "Seconds between counter summaries in the log (0: off).", _seconds("stats-interval")],
        ["shutdown-timeout", None, 5.0, "Seconds clients get to take their output at shutdown.", _seconds("shutdown-timeout")],
        ["drain", None, 0.0, f"Seconds over which clients are told goodbye at shutdown, each at a random moment, so that they do not all reconnect at once (as NATS's lame-duck mode), at most {config.MAX_DRAIN:g}; --shutdown-timeout follows.", _seconds("drain")],
        ["http-header-timeout", None, config.DEFAULT_HEADER_TIMEOUT, "Seconds an --http connection has to send each request's head (0: no limit).", _seconds("http-header-timeout")],
        ["http-compress", None, None, "Compress the stream messages of at least this many bytes for the WebSocket clients that negotiate permessage-deflate (browsers do), each once for all of them; e.g. 256 (default: off, since compressing costs CPU even when the data does not compress).", _bytes("http-compress")],
        ["restart-delay", None, 1.0, "Seconds before an exec: or sh: source that exited is run again.", _seconds("restart-delay")],
        ["cluster-subject", None, config.DEFAULT_SUBJECT, "Prefix of the NATS subjects the nodes share: stream NAME travels on PREFIX.NAME."],
        ["cluster-creds", None, None, "NATS credentials file (.creds) for --cluster."],
        ["cluster-user", None, None, "NATS user name for --cluster; the password is in --cluster-password-file."],
        ["cluster-password-file", None, None, "File holding the NATS password of --cluster-user."],
        ["cluster-token-file", None, None, "File holding a NATS authorization token for --cluster."],
        ["cluster-ca", None, None, "PEM file of the CAs the NATS servers' certificates must be signed by."],
        ["cluster-history", None, "core", "core (each node numbers its own messages) or jetstream (one JetStream stream numbers them for every node, and a node cut off catches up)."],
        ["cluster-retention", None, None, f"What the JetStream stream keeps: a size, an age or both (1GiB,24h). [default: {config.DEFAULT_RETENTION}]", config.parseRetention],
        ["cluster-key-file", None, None, "File holding a key shared by every node: each signs what it sends with it, and drops what is not so signed."],
        ["cluster-replicas", None, 1, "Copies of the JetStream stream in a NATS cluster (1-5).", _coerce.count("cluster-replicas", 1)],
    ]  # fmt: skip

    def __init__(self) -> None:
        super().__init__()
        for name in ("listen", "http", "http-origin", "source", "cluster"):
            self[name] = []

    def parseOptions(self, options: list[str] | None = None) -> None:
        """Parse; under twistd, end a mistake with one line and status 2, not twistd's whole usage."""
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            if self.parent is None:
                raise usage.UsageError(_coerce.oneLine(e)) from None
            sys.stderr.write(f"twistd streamd: {_coerce.oneLine(e)}\nsee twistd streamd --help\n")
            raise SystemExit(2) from None

    opt_listen = _repeatable("listen", "Listen on a Twisted endpoint (repeatable): tcp:7000:interface=0.0.0.0, unix:/run/streamd.sock, ssl:7443:privateKey=key.pem:certKey=cert.pem, ...; add :framing=ascii10 for the exercise's framing, :framing=seq for numbered messages that resume after a reconnect, :stream=NAME for a stream other than default.")
    opt_http = _repeatable("http", "Serve the live page, WebSocket (/ws), Server-Sent Events (/events), /metrics, /connz and /healthz on an endpoint (repeatable): tcp:8080:interface=127.0.0.1, or ssl:8443:interface=127.0.0.1:privateKey=key.pem:certKey=cert.pem for HTTPS and WSS.")
    opt_http_origin = _repeatable("http-origin", "Let web pages of this origin open /ws and /events (repeatable): https://example.com:8443, or * for any. Pages of the daemon's own origin, and clients that are not pages, need no such leave.")
    opt_source = _repeatable("source", "What to stream besides clients' messages (repeatable): clock (the default), exec:COMMAND (no shell), sh:COMMAND (through /bin/sh -c), file:PATH (followed like tail -F), stdin, or none; NAME=SPEC feeds the stream NAME, as prices=exec:./feed.")
    opt_cluster = _repeatable("cluster", "Join the other daemons that use this NATS server (repeatable, for several servers of one NATS cluster): nats://HOST:PORT or tls://HOST:PORT. Every message published on any node reaches the clients of all of them.")

    def postOptions(self) -> None:
        """Make C{self["config"]} and check the files it names; a mistake is one usage line."""
        try:
            self["config"] = self._config()
            self["config"].checkFiles()
        except config.ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _config(self) -> config.DaemonConfig:
        framing = FRAMINGS[self["framing"]]
        descriptions = list(self["listen"])
        if self["port"] is not None or not descriptions:
            port = config.DEFAULT_PORT if self["port"] is None else self["port"]
            descriptions.insert(0, f"tcp:{port}:interface={quoteStringArgument(self['interface'])}")
        sources = self["source"] or ["clock"]
        if "none" in sources and len(sources) > 1:
            raise config.ConfigError("--source none cannot be combined with other sources")
        size = self["max-message-size"]
        server = config.ServerConfig(
            maxMessageSize=size, maxClients=self["max-clients"], idleTimeout=self["idle-timeout"],
            access=self.accessPolicy(), authTimeout=self["auth-timeout"], heartbeat=self["heartbeat"] or None,
            maxPartialBytes=self["max-partial-bytes"] or max(DEFAULT_MAX_PARTIAL_BYTES, 2 * size),
            seqGaps=self["seq-evicted"] == "gap", httpOrigins=tuple(self["http-origin"]),
            metrics=self.streamMetrics(),
        )
        flow = config.FlowControl(
            history=self["history"], stallTimeout=self["stall-timeout"], softSeconds=self["soft-seconds"],
            blockPublishers=self["slow-consumer"] == "block", maxBehind=self["max-pending"],
            softBehind=self["soft-pending"],
        )
        shortcuts = config.Shortcuts(
            fastWrite=not self["no-fast-write"], bigReads=not self["no-big-reads"],
            acceptFirst=not self["no-accept-first"],
        )
        return config.DaemonConfig(
            listens=tuple(config.Listen.parse(d, framing, self["client-ca"]) for d in descriptions),
            sources=() if sources == ["none"] else tuple(sources), interval=self["interval"], server=server,
            flow=flow, shutdownTimeout=self["shutdown-timeout"], statsInterval=self["stats-interval"],
            restartDelay=self["restart-delay"], restart=not self["no-restart"], cluster=self._cluster(),
            http=tuple(config.httpEndpoint(d) for d in self["http"]), clientCA=self["client-ca"],
            httpPublicMetrics=self["http-public-metrics"], shortcuts=shortcuts,
            httpHeaderTimeout=self["http-header-timeout"] or None, httpCompress=self["http-compress"],
            drain=self["drain"],
            streams=self.streamsConfig(), durable=self.durableConfig(),
        )  # fmt: skip

    def _cluster(self) -> config.ClusterConfig | None:
        jetstream = self["cluster-history"] == "jetstream"
        default = config.parseRetention(config.DEFAULT_RETENTION) if jetstream else (None, None)
        size, age = self["cluster-retention"] or default
        cluster = config.ClusterConfig(
            servers=tuple(self["cluster"]), subject=self["cluster-subject"], creds=self["cluster-creds"],
            user=self["cluster-user"], passwordFile=self["cluster-password-file"], ca=self["cluster-ca"],
            tokenFile=self["cluster-token-file"], history=self["cluster-history"], retentionBytes=size,
            retentionAge=age, replicas=self["cluster-replicas"], keyFile=self["cluster-key-file"],
        )  # fmt: skip
        return cluster if cluster.servers else None


def makeService(options: Options) -> IService:
    """
    The daemon described by C{options}: a cluster node runs on Twisted's
    asyncio reactor, which nats-py then shares (see L{streamd.cluster.loop}),
    unless a reactor is installed already (C{twistd --reactor NAME}).
    """
    settings: config.DaemonConfig = options["config"]
    if settings.cluster is not None and "twisted.internet.reactor" not in sys.modules:
        from streamd.cluster.loop import installAsyncioReactor

        installAsyncioReactor()
    from twisted.internet import reactor

    from streamd.service import StreamdService, freezeStartup

    if not reactor.running:
        # twistd runs the reactor once this returns.
        reactor.callWhenRunning(freezeStartup)
    service = StreamdService(reactor, settings)
    if options.parent is not None and not options.parent["nodaemon"]:
        # A daemonised twistd's parent reports a child that cannot start in
        # two lines with a bytes repr: listen before it forks, so that the
        # one critical line (on stderr until twistd logs) is all it says.
        service.privilegedStartService()
    return service
