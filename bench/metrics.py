"""
Scraping streamd's C{/metrics} as Prometheus does, and timing it.
"""

from __future__ import annotations

import socket
import statistics
import time

from prometheus_client.parser import text_string_to_metric_families

from bench.servers import BenchError

SCRAPES = 9
"""
Scrapes timed per measurement, one after the other; the median counts.
"""
SCRAPE_SECONDS = 30.0
_REQUEST = b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: text/plain\r\n\r\n"


def scrape(port: int) -> tuple[float, bytes]:
    """
    One C{GET /metrics} on a new connection: the seconds from connecting
    until the whole response is in, and its body.

    @raise BenchError: if the answer is not a 200.
    """
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=SCRAPE_SECONDS) as sock:
        sock.sendall(_REQUEST)
        parts = []
        while chunk := sock.recv(1 << 16):
            parts.append(chunk)
    elapsed = time.monotonic() - start
    head, _, body = b"".join(parts).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if status.split(b" ")[1:2] != [b"200"]:
        raise BenchError(f"/metrics answered {status.decode('latin-1')!r}")
    return elapsed, body


def connections(body: bytes) -> float:
    """
    The connections the scraped C{body} counts, of every kind.
    """
    for family in text_string_to_metric_families(body.decode("utf-8")):
        if family.name == "streamd_connections":
            return sum(sample.value for sample in family.samples)
    raise BenchError("/metrics has no streamd_connections")


def scrapeSeconds(port: int, clients: int) -> tuple[float, float]:
    """
    The median and the longest time of L{SCRAPES} scrapes, each parsed and
    checked to count at least C{clients} connections.
    """
    times = []
    for _ in range(SCRAPES):
        elapsed, body = scrape(port)
        counted = connections(body)
        if counted < clients:
            raise BenchError(f"/metrics counted {counted:.0f} connections, not the {clients} open")
        times.append(elapsed)
    return statistics.median(times), max(times)
