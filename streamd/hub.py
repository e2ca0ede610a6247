"""
The hub: fans every published message out to every subscriber.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger

from streamd.framing import Framing, Payload
from streamd.stats import Stats


class Subscriber(Protocol):
    """
    A receiver of the stream: a client connection, in the daemon.
    """

    framing: Framing

    def deliver(self, data: bytes, count: int) -> None:
        """
        Send C{count} messages, already framed as C{data}.
        """


_Delivery = tuple[Subscriber, Framing, Callable[[bytes, int], None]]


class Hub:
    """
    Encodes each batch of messages once per framing in use and writes it to
    every subscriber but the one that sent it.

    With C{blockPublishers}, the hub is a lossless pipeline: while any
    subscriber has a backlog above its soft limit, every registered publisher
    is paused, and all are resumed when no subscriber has.
    """

    log = Logger()

    def __init__(self, stats: Stats, blockPublishers: bool = False) -> None:
        self.stats = stats
        self.blockPublishers = blockPublishers
        self._subscribers: dict[Subscriber, None] = {}
        self._deliveries: tuple[_Delivery, ...] | None = ()
        self._publishers: set[IPushProducer] = set()
        self._backlogged = 0

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """
        The current subscribers, in the order they subscribed.
        """
        return tuple(self._subscribers)

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers[subscriber] = None
        self._deliveries = None

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if self._subscribers.pop(subscriber, 0) is None:
            self._deliveries = None

    def _currentDeliveries(self) -> tuple[_Delivery, ...]:
        """
        Every subscriber with its framing and its C{deliver}, looked up once
        rather than per message.  Made again only when a message follows a
        change, so that many clients connecting in a row cost linear time,
        not quadratic.
        """
        deliveries = self._deliveries = tuple((s, s.framing, s.deliver) for s in self._subscribers)
        return deliveries

    def publish(
        self,
        payloads: Sequence[Payload],
        raw: bytes = b"",
        framing: Framing | None = None,
        sender: object = None,
    ) -> None:
        """
        Send C{payloads} to every subscriber except C{sender}.

        @param raw: the same messages already framed with C{framing}, if the
            caller has them, so they are not encoded again.
        """
        count = len(payloads)
        # The hot loop: subscribers that speak the sender's framing get the
        # bytes as they arrived; the others are served after, one encoding
        # per framing.
        if not raw:
            framing = None
        delivered = 0
        others = []
        deliveries = self._deliveries
        if deliveries is None:
            deliveries = self._currentDeliveries()
        for subscriber, subscriberFraming, deliver in deliveries:
            if subscriber is sender:
                continue
            if subscriberFraming is framing:
                deliver(raw, count)
                delivered += 1
            else:
                others.append(subscriber)
        sent = len(raw) * delivered
        if others:
            encodings: dict[Framing, bytes] = {}
            for subscriber in others:
                data = encodings.get(subscriber.framing)
                if data is None:
                    data = encodings[subscriber.framing] = subscriber.framing.encodeMany(payloads)
                subscriber.deliver(data, count)
                sent += len(data)
            delivered += len(others)
        stats = self.stats
        stats.messagesOut += count * delivered
        stats.bytesOut += sent

    def addPublisher(self, publisher: IPushProducer) -> None:
        """
        Let block mode pause C{publisher} while a subscriber is backlogged.
        """
        if publisher in self._publishers:
            return
        self._publishers.add(publisher)
        if self._backlogged:
            publisher.pauseProducing()

    def removePublisher(self, publisher: IPushProducer) -> None:
        self._publishers.discard(publisher)

    def backlogChanged(self, above: bool) -> None:
        """
        A subscriber's backlog went above (C{True}) or below its soft limit.
        """
        self._backlogged += 1 if above else -1
        if not self.blockPublishers:
            return
        if above and self._backlogged == 1:
            self.log.info("a client is backlogged: pausing {n} publisher(s)", n=len(self._publishers))
            for publisher in list(self._publishers):
                publisher.pauseProducing()
        elif not above and self._backlogged == 0:
            self.log.info("no client is backlogged: resuming {n} publisher(s)", n=len(self._publishers))
            for publisher in list(self._publishers):
                publisher.resumeProducing()
