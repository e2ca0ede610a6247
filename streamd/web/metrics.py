"""
C{/metrics}: the daemon's figures for Prometheus, read from its counters
when scraped (nothing is counted twice on the delivery path).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from twisted.web.resource import Resource
from twisted.web.server import Request

from streamd.fanout.history import FIRST
from streamd.reasons import Reason
from streamd.web.context import WebContext
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
    A C{prometheus_client} collector over the hub, the counters, the
    connections and the sources.
    """

    def __init__(self, context: WebContext, sources: Iterable[Any] = (), cluster: ClusterHealth = noCluster) -> None:
        self.context = context
        self.sources = list(sources)
        self.cluster = cluster

    def collect(self) -> Iterator[Metric]:
        context = self.context
        hub = context.hub
        stats = hub.stats
        history = hub.history

        kinds = Counter(session.adapter.kind for session in context.connections)
        kinds["http"] = len(context.connections.channels)
        connections = GaugeMetricFamily(
            "streamd_connections", "Open connections by kind.", labels=["kind"]
        )
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
        disconnects = CounterMetricFamily(
            "streamd_disconnects",
            "Connections the daemon closed or refused, and requests it refused, by reason.",
            labels=["reason"],
        )
        for reason in Reason:
            disconnects.add_metric([reason.label], stats.disconnects[reason])
        yield disconnects

        yield GaugeMetricFamily("streamd_history_bytes", "Bytes of messages the history holds.", value=history.size)
        yield GaugeMetricFamily(
            "streamd_history_encoding_bytes",
            "Bytes of the history's messages encoded for subscribers of other framings (a bounded cache).",
            value=history.encodingBytes,
        )
        yield GaugeMetricFamily("streamd_history_entries", "Entries the history holds.", value=len(history))
        oldest = history[history.start][FIRST] if len(history) else history.nextSequence
        yield GaugeMetricFamily(
            "streamd_history_oldest_sequence", "Sequence number of the oldest message held.", value=oldest
        )
        yield GaugeMetricFamily(
            "streamd_history_newest_sequence",
            "Sequence number of the newest message.",
            value=history.nextSequence - 1,
        )

        subscribers = hub.subscribers
        behind = [cursor.behind for cursor in subscribers if not cursor.live]
        state = GaugeMetricFamily("streamd_subscribers", "Subscribers caught up or behind.", labels=["state"])
        state.add_metric(["live"], len(subscribers) - len(behind))
        state.add_metric(["behind"], len(behind))
        yield state
        yield GaugeMetricFamily(
            "streamd_slowest_subscriber_lag_bytes",
            "Bytes of the history the slowest subscriber has still to be sent.",
            value=max(behind, default=0),
        )
        yield GaugeMetricFamily(
            "streamd_publishers_paused",
            "1 while publishers that wait are paused for subscribers.",
            value=hub.paused,
        )
        running = GaugeMetricFamily("streamd_source_running", "1 while a --source runs.", labels=["source"])
        for source in self.sources:
            running.add_metric([source.spec], 1 if source.running else 0)
        yield running
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


class MetricsResource(Resource):
    """
    C{/metrics}, in Prometheus's text format.
    """

    isLeaf = True

    def __init__(self, context: WebContext, sources: Iterable[Any] = (), cluster: ClusterHealth = noCluster) -> None:
        super().__init__()
        self.context = context
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(StreamdCollector(context, sources, cluster))  # type: ignore[arg-type]

    def render_GET(self, request: Request) -> bytes:
        refusal = refused(self.context, request)
        if refusal is not None:
            return refusal
        request.setHeader("Content-Type", CONTENT_TYPE_LATEST)
        return generate_latest(self.registry)
