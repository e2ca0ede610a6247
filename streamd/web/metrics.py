"""
C{/metrics}: the daemon's figures for Prometheus, read from its counters
when scraped (nothing is counted twice on the delivery path).

The daemon's figures cover all its streams; a few streams have series of
their own (C{stream="..."}): the C{--metrics-streams} that have published
the most, picked when scraped, and those C{--metrics-stream} names, among
those the scraper's token may read.  However many streams there are, the
series stay that few.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.web.resource import Resource
from twisted.web.server import Request

from streamd.auth import ALL_STREAMS, StreamRights, digest
from streamd.config import StreamMetrics
from streamd.fanout.history import FIRST
from streamd.fanout.hub import Hub
from streamd.reasons import Reason
from streamd.web.context import WebContext, bearerToken
from streamd.web.guard import refused

ClusterHealth = Callable[[], "dict[str, Any] | None"]


def noCluster() -> None:
    """
    The cluster link's health on a single node: none.
    """


KINDS = ("tcp", "websocket", "sse", "http")
"""
The kinds of connection: a session's listener kind, or C{http} for an
HTTP connection that is not a session (between requests, or answered
without one).
"""


class StreamdCollector:
    """
    A C{prometheus_client} collector over the streams, the counters, the
    connections and the sources, for a scraper that may read the streams
    C{rights} allows.
    """

    def __init__(
        self,
        context: WebContext,
        sources: Iterable[Any] = (),
        rights: StreamRights = ALL_STREAMS,
        cluster: ClusterHealth = noCluster,
    ) -> None:
        self.context = context
        self.sources = list(sources)
        self.rights = rights
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        context = self.context
        hub = context.hub
        stats = hub.stats
        history = hub.history
        hubs = streamsOf(context)

        kinds = Counter(session.adapter.kind for session in context.connections)
        kinds["http"] = len(context.connections.channels)
        connections = GaugeMetricFamily("streamd_connections", "Open connections by kind.", labels=["kind"])
        for kind in sorted(set(KINDS) | set(kinds)):
            connections.add_metric([kind], kinds[kind])
        yield connections
        yield CounterMetricFamily(
            "streamd_connections_accepted", "Connections accepted since start.", value=stats.connectionsTotal
        )
        for name, help, value in (
            ("streamd_messages_in", "Messages published, by clients and sources.", stats.messagesIn),
            ("streamd_bytes_in", "Payload bytes published.", stats.bytesIn),
            ("streamd_deliveries", "Messages sent, counted once per recipient.", stats.messagesOut),
            ("streamd_bytes_out", "Bytes sent to subscribers, framing included.", stats.bytesOut),
        ):
            yield CounterMetricFamily(name, help, value=value)
        deflater = context.deflater
        if deflater is not None:
            for name, help, value in (
                (
                    "streamd_websocket_compressed_messages",
                    "Messages compressed for WebSocket clients (--http-compress), each once for all of them.",
                    deflater.messages,
                ),
                ("streamd_websocket_compressed_bytes_in", "Bytes of those messages.", deflater.bytesIn),
                ("streamd_websocket_compressed_bytes_out", "Bytes they were compressed to.", deflater.bytesOut),
            ):
                yield CounterMetricFamily(name, help, value=value)
        disconnects = CounterMetricFamily(
            "streamd_disconnects",
            "Connections the daemon closed or refused, and requests it refused, by reason.",
            labels=["reason"],
        )
        for reason in Reason:
            disconnects.add_metric([reason.label], stats.disconnects[reason])
        yield disconnects

        yield GaugeMetricFamily("streamd_streams", "Streams the daemon holds.", value=len(hubs))
        yield GaugeMetricFamily(
            "streamd_history_bytes",
            "Bytes of messages the histories of all streams hold.",
            value=sum(each.history.size for each in hubs),
        )
        yield GaugeMetricFamily(
            "streamd_history_encoding_bytes",
            "Bytes of the histories' messages encoded for subscribers of other framings (a bounded cache).",
            value=sum(each.history.encodingBytes for each in hubs),
        )
        yield GaugeMetricFamily(
            "streamd_history_entries",
            "Entries the histories of all streams hold.",
            value=sum(len(each.history) for each in hubs),
        )
        oldest = history[history.start][FIRST] if len(history) else history.nextSequence
        yield GaugeMetricFamily(
            "streamd_history_oldest_sequence",
            "Sequence number of the oldest message held of the stream default.",
            value=oldest,
        )
        yield GaugeMetricFamily(
            "streamd_history_newest_sequence",
            "Sequence number of the newest message of the stream default.",
            value=history.nextSequence - 1,
        )

        subscribers = [cursor for each in hubs for cursor in each.subscribers]
        behind = [cursor.behind for cursor in subscribers if not cursor.live]
        state = GaugeMetricFamily(
            "streamd_subscribers", "Subscribers of all streams caught up or behind.", labels=["state"]
        )
        state.add_metric(["live"], len(subscribers) - len(behind))
        state.add_metric(["behind"], len(behind))
        yield state
        yield GaugeMetricFamily(
            "streamd_slowest_subscriber_lag_bytes",
            "Bytes of a history the slowest subscriber has still to be sent.",
            value=max(behind, default=0),
        )
        yield GaugeMetricFamily(
            "streamd_publishers_paused",
            "Streams whose publishers that wait are paused for subscribers.",
            value=sum(1 for each in hubs if each.paused),
        )
        running = GaugeMetricFamily("streamd_source_running", "1 while a --source runs.", labels=["source"])
        for source in self.sources:
            running.add_metric([source.spec], 1 if source.running else 0)
        yield running
        yield from streamFamilies(shownStreams(hubs, context.config.metrics, self.rights))
        link = self.cluster()
        if link is not None:
            from streamd.cluster.guard import Drop

            yield GaugeMetricFamily(
                "streamd_cluster_connected", "1 while the cluster link is on NATS.", value=link["state"] == "connected"
            )
            rejected = CounterMetricFamily(
                "streamd_cluster_rejected", "NATS messages dropped by the cluster link's checks, by reason.", labels=["reason"]
            )
            for drop in Drop:
                rejected.add_metric([drop.label], link["rejected"].get(drop.label, 0))
            yield rejected


def streamsOf(context: WebContext) -> Sequence[Hub]:
    """
    The daemon's streams, or the listener's own when the context knows of
    no others.
    """
    streams = getattr(context, "streams", None)
    return [context.hub] if streams is None else list(streams)


def shownStreams(hubs: Sequence[Hub], metrics: StreamMetrics, rights: StreamRights) -> list[Hub]:
    """
    The streams that have series of their own, by name: of those C{rights}
    may read, the C{metrics.top} that have published the most messages
    (this epoch; the first names first among equals) and the
    C{metrics.named} ones.  Picked in one pass over the streams, when
    scraped: publishing costs nothing more.
    """
    readable = [hub for hub in hubs if rights.reads(hub.name)]
    shown = {hub.name: hub for hub in heapq.nsmallest(metrics.top, readable, key=_traffic)}
    if metrics.named:
        named = set(metrics.named)
        shown.update((hub.name, hub) for hub in readable if hub.name in named)
    return [shown[name] for name in sorted(shown)]


def _traffic(hub: Hub) -> tuple[int, str]:
    return -hub.history.nextSequence, hub.name


def streamFamilies(hubs: Sequence[Hub]) -> Iterator[Metric]:
    """
    The series of each of C{hubs}, labelled with its name.
    """
    subscribers = GaugeMetricFamily(
        "streamd_stream_subscribers", "Subscribers of the stream.", labels=["stream"]
    )
    messages = CounterMetricFamily(
        "streamd_stream_messages",
        "Messages published to the stream since it began numbering (its newest sequence number).",
        labels=["stream"],
    )
    held = GaugeMetricFamily(
        "streamd_stream_history_bytes", "Bytes of messages the stream's history holds.", labels=["stream"]
    )
    for hub in hubs:
        figures = hub.figures()
        subscribers.add_metric([hub.name], figures["subscribers"])
        messages.add_metric([hub.name], figures["newest"])
        held.add_metric([hub.name], figures["history_bytes"])
    yield from (subscribers, messages, held)


class MetricsResource(Resource):
    """
    C{/metrics}, in Prometheus's text format.
    """

    isLeaf = True

    def __init__(self, context: WebContext, sources: Iterable[Any] = (), cluster: ClusterHealth = noCluster) -> None:
        super().__init__()
        self.context = context
        self.sources = list(sources)
        self.cluster = cluster

    def render_GET(self, request: Request) -> bytes:
        refusal = refused(self.context, request)
        if refusal is not None:
            return refusal
        registry = CollectorRegistry(auto_describe=False)
        collector = StreamdCollector(self.context, self.sources, self.scraperRights(request), self.cluster)
        registry.register(collector)  # type: ignore[arg-type]
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return generate_latest(registry)

    def scraperRights(self, request: Request) -> StreamRights:
        """
        The streams whose series the scraper of C{request} is shown: all
        with C{--http-public-metrics} or without an access file, else
        those its token may read.
        """
        token = bearerToken(request.getHeader(b"authorization"))
        if self.context.publicMetrics or token is None:
            return ALL_STREAMS
        return self.context.config.access.rightsForDigest(digest(token))
