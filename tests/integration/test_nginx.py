"""
streamd behind a real nginx (Debian's package), configured as
C{docs/proxy/nginx.conf} says: an event reaches an SSE client through it
within a second, and a WebSocket works through it both ways.

Skipped when nginx is missing, except under CI (C{CI} set), where that is a
failure: C{.ci/run} installs it.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from streamd.config import DaemonConfig, Listen, ServerConfig
from tests.integration.test_web_integration import LOCAL, openWebSocket
from tests.support import startDaemon, waitFor
from tests.webtools import cancelBatchedTimers, events

CONFIG = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "proxy", "nginx.conf")


def nginxExecutable() -> str:
    """
    The nginx executable; a skip (a failure under CI) when there is none.
    """
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if found is None:
        message = "nginx is missing (apt-get install nginx)"
        if os.environ.get("CI"):
            raise AssertionError(message + " (CI is set: .ci/run installs it)")
        raise SkipTest(message)
    return found


def freePort() -> int:
    """
    A loopback port nothing listens on now.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def configuration(directory: str, port: int, upstream: int) -> str:
    """
    nginx's whole configuration: the documented server block, listening on
    C{port} and proxying to streamd on C{upstream}, in a process of its own
    that keeps its files in C{directory}.
    """
    with open(CONFIG) as f:
        documented = f.read()
    assert "listen 80;" in documented and "server 127.0.0.1:8080;" in documented
    documented = documented.replace("listen 80;", f"listen 127.0.0.1:{port};")
    documented = documented.replace("server 127.0.0.1:8080;", f"server 127.0.0.1:{upstream};")
    temporary = "\n".join(
        f"    {kind}_temp_path {directory}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""
daemon off;
master_process off;
pid {directory}/nginx.pid;
error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
{temporary}
{documented}
}}
"""


class _Nginx(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred[None] = Deferred()

    def errReceived(self, data: bytes) -> None:
        self.output += data

    outReceived = errReceived

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class _Stream(Protocol):
    """
    A raw HTTP/1.0 client of C{/events}: what came, and when each event did.
    """

    def __init__(self) -> None:
        self.data = b""
        self.arrived: dict[str, float] = {}

    def connectionMade(self) -> None:
        self.transport.write(b"GET /events HTTP/1.0\r\nHost: localhost\r\n\r\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for event in self.events():
            self.arrived.setdefault(event["data"], reactor.seconds())  # type: ignore[attr-defined]

    def events(self) -> list[dict[str, str]]:
        head, _, body = self.data.partition(b"\r\n\r\n")
        return events(body.decode()) if body else []


class NginxTests(TestCase):
    """
    streamd behind nginx, as documented.
    """

    @inlineCallbacks
    def setUp(self) -> Any:
        executable = nginxExecutable()
        self.addCleanup(cancelBatchedTimers)
        config = DaemonConfig(listens=(Listen(LOCAL),), sources=(), server=ServerConfig(), http=(LOCAL,))
        self.service, _ = startDaemon(self, config)
        upstream = self.service.listeners[-1].port.getHost().port  # type: ignore[union-attr]
        directory = tempfile.mkdtemp(prefix="streamd-nginx-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.port = freePort()
        path = os.path.join(directory, "nginx.conf")
        with open(path, "w") as f:
            f.write(configuration(directory, self.port, upstream))
        nginx = _Nginx()
        process = reactor.spawnProcess(  # type: ignore[attr-defined]
            nginx, executable, [executable, "-p", directory, "-c", path], env=os.environ.copy()
        )
        self.addCleanup(lambda: nginx.ended)
        self.addCleanup(lambda: nginx.ended.called or process.signalProcess("TERM"))
        yield waitFor(lambda: self.listening() or nginx.ended.called, details=lambda: nginx.output)
        self.assertFalse(nginx.ended.called, nginx.output)

    def listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    @inlineCallbacks
    def test_eventWithinASecond(self) -> Any:
        """
        Through nginx's default C{proxy_pass}, an event published reaches
        the SSE client within a second: nginx does not buffer the stream.
        """
        stream = _Stream()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port)
        connected = yield endpoint.connect(Factory.forProtocol(lambda: stream))
        self.addCleanup(connected.transport.loseConnection)
        yield waitFor(lambda: stream.events(), details=lambda: stream.data)
        self.assertIn(b"Cache-Control: no-cache", stream.data)
        self.assertEqual(json.loads(stream.events()[0]["data"])["next"], 1)
        published = reactor.seconds()  # type: ignore[attr-defined]
        self.service.hub.publish([b"through nginx"])
        yield waitFor(lambda: "through nginx" in stream.arrived, details=lambda: stream.data)
        self.assertLess(stream.arrived["through nginx"] - published, 1.0)

    @inlineCallbacks
    def test_webSocket(self) -> Any:
        """
        A WebSocket through nginx gets C{hello} and the stream, and what it
        sends is published.
        """
        factory = yield openWebSocket(self, self.port)
        yield waitFor(lambda: factory.received)
        self.assertEqual(json.loads(factory.received[0][1][1:])["type"], "hello")
        self.service.hub.publish([b"to the socket"])
        yield waitFor(lambda: len(factory.received) == 2)
        self.assertEqual(factory.received[1], (False, b"to the socket"))
        factory.client.sendMessage(b"from the socket")
        yield waitFor(lambda: self.service.hub.history.nextSequence == 3)
