"""
The command line's options about named streams, a part of
L{streamd.tap.Options}: which exist, who may read and publish to which
(the access file, with the token files), and which C{/metrics} shows.
"""

from __future__ import annotations

from twisted.python import usage

from streamd import _coerce, config
from streamd.access import AccessFile
from streamd.auth import AccessPolicy, TokenFile


class StreamsOptions(usage.Options):
    """Options of C{twistd streamd} about its named streams."""

    optParameters = [
        ["streams", None, "open", "open: a stream is made when first published or subscribed to; declared: only the streams --declare, --source and --listen ... :stream= name exist.", _coerce.choice("streams", "open", "declared")],
        ["max-streams", None, config.StreamsConfig.maxStreams, "Most streams the daemon holds; a new one past it is refused.", _coerce.count("max-streams", 1)],
        ["stream-idle", None, None, "Forget a stream after this many seconds with no subscriber, publisher or message (its history with it); declared streams stay (default: never).", _coerce.seconds("stream-idle", 0, inclusive=False)],
        ["stream-history", None, None, "Bytes of one stream's history at most (default: all of --history, which bounds all streams together).", _coerce.size("stream-history", 1)],
        ["access-file", None, None, "Tokens and the streams each may read and publish to, one line a token: TOKEN read=prices.>,news.* publish=prices.eu.> (see the security docs). Every client must then send a token; re-read on SIGHUP."],
        ["metrics-streams", None, config.StreamMetrics.top, "Streams with series of their own in /metrics: the N that published the most messages (0: none).", _coerce.count("metrics-streams")],
    ]  # fmt: skip

    def opt_declare(self, name: str) -> None:
        """A stream that exists from the start, and with --streams declared may exist (repeatable): prices.eu."""
        self.setdefault("declare", []).append(name)

    def opt_metrics_stream(self, name: str) -> None:
        """A stream with series of its own in /metrics besides the --metrics-streams busiest (repeatable)."""
        self.setdefault("metrics-stream", []).append(name)

    def streamsConfig(self) -> config.StreamsConfig:
        """The named streams' part of the daemon's settings."""
        return config.StreamsConfig(
            maxStreams=self["max-streams"], declared=tuple(self.get("declare", ())),
            declaredOnly=self["streams"] == "declared", idleTimeout=self["stream-idle"],
            streamHistory=self["stream-history"],
        )  # fmt: skip

    def streamMetrics(self) -> config.StreamMetrics:
        """The streams C{/metrics} shows one by one."""
        return config.StreamMetrics(self["metrics-streams"], tuple(self.get("metrics-stream", ())))

    def accessPolicy(self) -> AccessPolicy:
        """
        Who may read and publish to what: the token files, the access file
        and C{--read-only}; sets C{--auth-timeout}'s default.

        @raise config.ConfigError: for a file that cannot be used, or
            options that do not go together.
        """
        accessFile = self["access-file"]
        if self["auth-timeout"] is None:
            self["auth-timeout"] = config.DEFAULT_AUTH_TIMEOUT
        elif not (self["auth-token-file"] or accessFile):
            raise config.ConfigError("--auth-timeout needs --auth-token-file or --access-file")
        return AccessPolicy(
            auth=TokenFile(self["auth-token-file"]) if self["auth-token-file"] else None,
            publish=TokenFile(self["publish-token-file"]) if self["publish-token-file"] else None,
            readOnly=self["read-only"],
            accessFile=AccessFile(accessFile) if accessFile else None,
        )
