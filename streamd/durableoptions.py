"""
The command line's options about keeping the history on disk, a part of
L{streamd.tap.Options}.
"""

from __future__ import annotations

from twisted.python import usage

from streamd import _coerce, config


class DurableOptions(usage.Options):
    """Options of C{twistd streamd} about durability."""

    optParameters = [
        ["data-dir", None, None, "Keep every stream's history on disk in this directory (streams/NAME/): it survives restarts with its epoch and numbers, so clients resume with no gap, and acknowledged publishers are not taken twice (see docs/durability.rst)."],
        ["fsync", None, "everysec", "With --data-dir, when writes are synced to the disk: always (before a publisher's ACK; a power cut loses nothing acknowledged), everysec (once a second; a power cut loses about the last second) or no (when the kernel writes back). A killed daemon loses nothing in any case.", _coerce.choice("fsync", *config.FSYNC_POLICIES)],
        ["history-age", None, None, "Messages older than this leave the history too (90s, 10m, 24h, 7d); with --data-dir, old segments are deleted whole (default: no age limit).", _coerce.duration("history-age")],
    ]  # fmt: skip

    def durableConfig(self) -> config.DurableConfig:
        """The on-disk part of the daemon's settings."""
        return config.DurableConfig(dataDir=self["data-dir"], fsync=self["fsync"], historyAge=self["history-age"])
