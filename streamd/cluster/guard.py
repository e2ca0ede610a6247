"""
What a node accepts from NATS: the NATS account is inside streamd's trust
boundary, so whatever arrives on the cluster's subjects is checked before it
reaches a client, and what fails a check is dropped, counted by reason and
logged (throttled).

With a shared key (C{--cluster-key-file}) every node signs what it sends
(HMAC-SHA256 over the headers that matter and the payload) and drops what
is not signed with it, so a NATS user without the key cannot inject.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections import Counter
from enum import Enum

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from streamd.throttle import LogThrottle

NODE_ID = re.compile(r"[0-9a-f]{16}\Z")
"""
A node's identity: 8 random bytes in hex, drawn when the link starts.
"""


class Drop(Enum):
    """
    Why a NATS message on the cluster's subjects was dropped: each member
    is a C{/metrics} label and the words of the log line.
    """

    NOT_FRAMES = ("not_frames", "is not whole streamd frames")
    TOO_LARGE = ("too_large", "holds a message over --max-message-size")
    BAD_HEADER = ("bad_header", "lacks a streamd header or has a malformed one")
    BAD_PART = ("bad_part", "is a part out of place (a lost part, or a forged one)")
    PART_MEMORY = ("part_memory", "is a part over the memory allowed for unfinished large messages")
    PART_TIMEOUT = ("part_timeout", "began a large message whose other parts did not come in time")
    UNSIGNED = ("unsigned", "is not signed with --cluster-key-file's key")
    FORGED = ("forged", "claims this node's identity but this node did not send it")
    STALE = ("stale", "is numbered behind the stream (a copy, or a forged number)")
    NO_STREAM = (
        "no_stream",
        "is for a stream this node cannot make (a bad name, --streams declared, --max-streams)",
    )

    @property
    def label(self) -> str:
        return self.value[0]

    @property
    def words(self) -> str:
        return self.value[1]


class DropCounter:
    """
    Counts what a link drops, by reason, and logs it: at most a few lines a
    second, then one line for what was held back.

    @ivar counts: drops since the daemon started, by reason.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, subject: str) -> None:
        # The subjects of the cluster, for drops not of one subject.
        self.subject = subject
        self.counts: Counter[Drop] = Counter()
        self._throttle = LogThrottle(clock, self._held, perSecond=5)

    def __call__(self, reason: Drop, sender: str = "", subject: str = "") -> None:
        """
        Count one NATS message dropped for C{reason}; C{sender} is the node
        it claims to come from, if any, C{subject} the subject it came on.
        """
        self.counts[reason] += 1
        if self._throttle.admitOne():
            self.log.warn(
                "cluster: dropped a NATS message on {subject}{sender}: it {why} ({reason}, {n} so far)",
                subject=subject or self.subject,
                sender=f" from node {sender}" if NODE_ID.match(sender) else "",
                why=reason.words,
                reason=reason.label,
                n=self.counts[reason],
            )

    def _held(self, messages: int, size: int) -> None:
        self.log.warn(
            "cluster: dropped {n} more NATS message(s) on {subject} in the last second (see /metrics)",
            n=messages,
            subject=self.subject,
        )

    def stop(self) -> None:
        self._throttle.stop()


class Signer:
    """
    Signs and checks node messages with the cluster's shared key.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def sign(self, data: bytes, *fields: str) -> str:
        """
        The signature of C{data} and the header values C{fields}, in hex.
        """
        mac = hmac.new(self._key, "\0".join(fields).encode() + b"\0", hashlib.sha256)
        mac.update(data)
        return mac.hexdigest()

    def verify(self, signature: str | None, data: bytes, *fields: str) -> bool:
        """
        Whether C{signature} is that of C{data} and C{fields}.
        """
        return signature is not None and hmac.compare_digest(signature, self.sign(data, *fields))
