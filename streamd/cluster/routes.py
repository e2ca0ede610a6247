"""
Which NATS subject each stream travels on, and which stream a subject names.

Stream C{NAME} travels on C{PREFIX.NAME}, C{--cluster-subject} being the
prefix (C{streamd.default}, C{streamd.prices.eu} by default); a node listens
to C{PREFIX.>}.  What arrives for a stream this node does not have makes it,
as a first publish here would; what is for a stream that cannot be made (a
bad name, C{--streams declared}, C{--max-streams}) is dropped and counted
(L{streamd.cluster.guard.Drop.NO_STREAM}).
"""

from __future__ import annotations

from collections.abc import Callable

from streamd.fanout.hub import Hub
from streamd.fanout.streams import StreamRefused, Streams
from streamd.names import BadName


class Routes:
    """
    The streams of this node, by subject.

    @ivar everything: the wildcard subject that covers every stream.
    """

    def __init__(self, prefix: str, streams: Streams) -> None:
        self.prefix = prefix
        self.streams = streams
        self.everything = f"{prefix}.>"
        self._skip = len(prefix) + 1
        self._hooks: list[Callable[[Hub], None]] = []

    def subject(self, name: str) -> str:
        """
        The subject stream C{name} travels on.
        """
        return f"{self.prefix}.{name}"

    def name(self, subject: str) -> str:
        """
        The stream C{subject} (one of L{everything}'s) names; perhaps not a
        stream name.
        """
        return subject[self._skip :]

    def hub(self, name: str) -> Hub | None:
        """
        The stream C{name}, made if need be; C{None} if it cannot be made
        (what is for it is then dropped).
        """
        hub = self.streams.get(name)
        if hub is not None:
            return hub
        try:
            return self.streams.open(name)
        except (BadName, StreamRefused):
            return None

    def attach(self, hook: Callable[[Hub], None]) -> None:
        """
        Call C{hook} with every stream: those there now, and each one made
        later, when it is made.
        """
        for hub in self.streams:
            hook(hub)
        self.streams.hooks.append(hook)
        self._hooks.append(hook)

    def detach(self) -> None:
        """
        Call the hooks of L{attach} no more.
        """
        for hook in self._hooks:
            self.streams.hooks.remove(hook)
        self._hooks.clear()
