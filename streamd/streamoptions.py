"""
The command line's options about named streams, a part of
L{streamd.tap.Options}.
"""

from __future__ import annotations

from twisted.python import usage

from streamd import _coerce, config


class StreamsOptions(usage.Options):
    """Options of C{twistd streamd} about its named streams."""

    optParameters = [
        ["streams", None, "open", "open: a stream is made when first published or subscribed to; declared: only the streams --declare, --source and --listen ... :stream= name exist.", _coerce.choice("streams", "open", "declared")],
        ["max-streams", None, config.StreamsConfig.maxStreams, "Most streams the daemon holds; a new one past it is refused.", _coerce.count("max-streams")],
        ["stream-idle", None, None, "Forget a stream after this many seconds with no subscriber, publisher or message (its history with it); declared streams stay (default: never).", _coerce.seconds("stream-idle")],
        ["stream-history", None, None, "Bytes of one stream's history at most (default: all of --history, which bounds all streams together).", _coerce.size("stream-history")],
    ]  # fmt: skip

    def opt_declare(self, name: str) -> None:
        """A stream that exists from the start, and with --streams declared may exist (repeatable): prices.eu."""
        self.setdefault("declare", []).append(name)

    def streamsConfig(self) -> config.StreamsConfig:
        """The named streams' part of the daemon's settings."""
        return config.StreamsConfig(
            maxStreams=self["max-streams"], declared=tuple(self.get("declare", ())),
            declaredOnly=self["streams"] == "declared", idleTimeout=self["stream-idle"],
            streamHistory=self["stream-history"],
        )  # fmt: skip
