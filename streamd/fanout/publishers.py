"""
The publishers' window: for each client identity that numbers its
messages (C{seq} version 5), the highest publish number a stream has taken
from it, so that a retransmission after a cut connection or a restart is
acknowledged again rather than published twice.
"""

from __future__ import annotations

from collections.abc import Iterator

NO_IDENTITY = bytes(8)


def senderOf(identity: bytes) -> int:
    """
    The publisher serial of the client that names itself C{identity} (see
    L{streamd.seqserver.identitySerial}), or 0 for none: kept on disk with
    what it published, it keeps a resuming client's own messages from it
    after a restart too.
    """
    return 0 if identity == NO_IDENTITY else -1 - int.from_bytes(identity, "big")


def identityOf(sender: int) -> bytes:
    """
    The identity of the publisher serial C{sender}, or L{NO_IDENTITY} for a
    connection's own serial, which means nothing after a restart.
    """
    return (-1 - sender).to_bytes(8, "big") if sender < 0 else NO_IDENTITY


WINDOW_IDENTITIES = 65536
"""
Identities a stream remembers at most; the one heard from longest ago is
forgotten first.
"""


class PublisherWindow:
    """
    The publish numbers taken, by identity: a number not above the highest
    taken from its identity is a retransmission (a client numbers its
    messages from 1, one more each, and sends them again in order).
    """

    def __init__(self, limit: int = WINDOW_IDENTITIES) -> None:
        self.limit = limit
        self._taken: dict[bytes, tuple[int, int]] = {}

    def __len__(self) -> int:
        return len(self._taken)

    def __iter__(self) -> Iterator[tuple[bytes, int, int]]:
        return ((identity, number, seq) for identity, (number, seq) in self._taken.items())

    def highest(self, identity: bytes) -> tuple[int, int]:
        """
        The highest publish number taken from C{identity}, and the
        sequence number it was given (0, 0: none).
        """
        return self._taken.get(identity, (0, 0))

    def took(self, identity: bytes, number: int, seq: int) -> None:
        """
        Message C{number} of C{identity} is in the stream as message C{seq}.
        """
        taken = self._taken
        taken.pop(identity, None)
        taken[identity] = (number, seq)
        if len(taken) > self.limit:
            del taken[next(iter(taken))]
