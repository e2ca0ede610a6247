"""
The page and an C{EventSource} in a real browser: headless Chromium driven
by Selenium, against a daemon on loopback sockets.

Skipped when Chromium or chromedriver is missing, except under CI (C{CI}
set), where that is a failure: C{.ci/run} installs them.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import tempfile
import time
import urllib.request
from typing import Any

from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from streamd.config import DaemonConfig, Listen
from tests.support import startDaemon

LOCAL = "tcp:0:interface=127.0.0.1"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,860",
)


def artifacts() -> str:
    """
    Where the browser tests save what they show (C{STREAMD_ARTIFACTS}, or a
    folder in the temporary directory).
    """
    path = os.environ.get("STREAMD_ARTIFACTS") or os.path.join(tempfile.gettempdir(), "streamd-artifacts")
    os.makedirs(path, exist_ok=True)
    return path


def browserOrSkip() -> tuple[str, str]:
    """
    The Chromium and chromedriver executables; a skip (a failure under CI)
    without them.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium and driver:
        return chromium, driver
    message = "headless Chromium tests need chromium, chromium-driver and selenium"
    if os.environ.get("CI"):
        raise AssertionError(message + " (CI is set: .ci/run installs them)")
    raise SkipTest(message)


def openBrowser(chromium: str, driver: str, profile: str) -> Any:
    """
    A headless Chromium with a new empty profile.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service(driver), options=options)


def until(condition: Any, seconds: float = 20.0) -> None:
    """
    Wait, in the test's worker thread, until C{condition()} holds.

    A poll, not an event: WebDriver tells nothing when the page changes, and
    this thread runs no reactor to be told on.
    """
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {seconds:g} s: {condition}")
        time.sleep(0.05)


class _Publisher:
    """
    A blocking TCP client that publishes int32 frames.
    """

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port))

    def send(self, payload: bytes) -> None:
        self.socket.sendall(struct.pack(">I", len(payload)) + payload)

    def close(self) -> None:
        self.socket.close()


class _BrowserMixin:
    """
    A daemon with one TCP and one C{--http} listener, and a headless
    Chromium to open its pages.
    """

    timeout = 120
    compress: int | None = None

    def setUp(self) -> None:
        self.chromium, self.driver = browserOrSkip()
        config = DaemonConfig(listens=(Listen(LOCAL),), sources=(), http=(LOCAL,), httpCompress=self.compress)
        self.service, self.tcpPort = startDaemon(self, config)
        port = self.service.listeners[-1].port
        assert port is not None
        self.url = f"http://127.0.0.1:{port.getHost().port}"

    def inBrowser(self, scenario: Any) -> Any:
        """
        Run C{scenario(browser)} in a thread, the reactor serving meanwhile.
        """
        profile = tempfile.mkdtemp(prefix="streamd-chromium-")

        def run() -> None:
            browser = openBrowser(self.chromium, self.driver, profile)
            try:
                scenario(browser)
            finally:
                browser.quit()
                shutil.rmtree(profile, ignore_errors=True)

        return deferToThread(run)


class BrowserTests(_BrowserMixin, TestCase):
    """
    The daemon seen by a browser.
    """

    def test_pageShowsStream(self) -> None:
        """
        The page shows messages a TCP client publishes, as text (markup in
        a message is not interpreted), and its chart fills; a screenshot is
        saved.
        """
        screenshot = os.path.join(artifacts(), "streamd-page.png")

        def scenario(browser: Any) -> None:
            from selenium.webdriver.common.by import By

            browser.get(self.url + "/")
            until(lambda: browser.execute_script("return next !== null"))
            publisher = _Publisher(self.tcpPort)
            try:
                for i in range(1, 81):
                    kind = ("temperature", "pressure", "humidity")[i % 3]
                    publisher.send(f'{{"sensor": "{kind}", "reading": {i * 7 % 97}, "n": {i}}}'.encode())
                    if i % 20 == 0:
                        publisher.send(b"<b>markup stays text</b>")
                    if i % 10 == 0:
                        until(
                            lambda points=i // 10: (
                                browser.execute_script("return rates.messages.length") >= points
                            )
                        )
                until(lambda: '"n": 80' in browser.find_element(By.ID, "messages").text)
            finally:
                publisher.close()
            messages = browser.find_element(By.ID, "messages")
            self.assertIn("<b>markup stays text</b>", messages.text)
            self.assertEqual(messages.find_elements(By.TAG_NAME, "b"), [])
            until(lambda: browser.find_element(By.ID, "connections").text not in ("", "–"))
            browser.save_screenshot(screenshot)

        d = self.inBrowser(scenario)
        d.addCallback(lambda _: print(f"\nscreenshot of the page: {screenshot}"))
        return d

    def test_eventSourceResumes(self) -> None:
        """
        A browser's C{EventSource}, dropped by the daemon, reconnects with
        C{Last-Event-ID} and misses no message, including those published
        while it was away.
        """

        def dropEventStreams() -> int:
            streams = [c for c in self.service.connections if c.adapter.kind == "sse"]
            for stream in streams:
                stream.abort()
            return len(streams)

        def scenario(browser: Any) -> None:
            browser.get(self.url + "/healthz")
            browser.execute_script(
                "window.seen = []; window.opens = 0;"
                "const source = new EventSource('/events');"
                "source.addEventListener('hello', () => { window.opens += 1; });"
                "source.onmessage = e => window.seen.push([e.lastEventId, e.data]);"
            )
            until(lambda: browser.execute_script("return window.opens") == 1)
            publisher = _Publisher(self.tcpPort)
            try:
                for i in range(1, 6):
                    publisher.send(b"m%d" % i)
                until(lambda: browser.execute_script("return window.seen.length") == 5)
                self.assertEqual(blockingCallFromThread(reactor, dropEventStreams), 1)
                for i in range(6, 11):
                    publisher.send(b"m%d" % i)
                until(lambda: browser.execute_script("return window.opens") == 2)
                until(lambda: browser.execute_script("return window.seen.length") >= 10)
            finally:
                publisher.close()
            seen = browser.execute_script("return window.seen")
            self.assertEqual([data for _, data in seen], [f"m{i}" for i in range(1, 11)])
            sequences = [int(eventId.rpartition("-")[2]) for eventId, _ in seen]
            self.assertEqual(sequences, list(range(sequences[0], sequences[0] + 10)))

        return self.inBrowser(scenario)

    def test_twoStreams(self) -> None:
        """
        A page follows two streams, over one WebSocket of both
        (C{/ws/demo.left,demo.right}) and one C{EventSource} of a pattern
        (C{/events/demo.*}), while they are published to over HTTP: each
        gets every message of each stream, in order, labelled with its
        stream.  The live page then lists both streams and shows the one
        chosen; a screenshot is saved.
        """
        screenshot = os.path.join(artifacts(), "streamd-page-streams.png")

        def publish(stream: str, payload: str) -> None:
            request = urllib.request.Request(f"{self.url}/streams/{stream}", payload.encode(), method="POST")
            with urllib.request.urlopen(request) as answer:
                assert answer.status == 200, answer.status

        def scenario(browser: Any) -> None:
            from selenium.webdriver.common.by import By

            browser.get(self.url + "/healthz")
            browser.execute_script(
                "window.ws = []; window.sse = []; window.announced = 0; window.opens = 0;"
                "const socket = new WebSocket('ws://' + location.host + '/ws/demo.left,demo.right');"
                "let stream = null, seq = null;"
                "socket.onmessage = e => {"
                "  if (e.data.startsWith('\\u001e')) {"
                "    const c = JSON.parse(e.data.slice(1));"
                "    if (c.type === 'stream') window.announced += 1;"
                "    if (c.type === 'in') { stream = c.stream; seq = c.first; }"
                "    return;"
                "  }"
                "  window.ws.push([stream, seq++, e.data]);"
                "};"
                "const source = new EventSource('/events/demo.*');"
                "source.addEventListener('hello', () => { window.opens += 1; });"
                "source.onmessage = e => window.sse.push([e.lastEventId, e.data]);"
            )
            until(lambda: browser.execute_script("return window.announced === 2 && window.opens === 1"))
            for i in range(1, 11):
                publish("demo.left", f"left {i}")
                publish("demo.right", f"right {i}")
            until(
                lambda: browser.execute_script("return window.ws.length === 20 && window.sse.length === 20")
            )
            for side in ("left", "right"):
                stream = f"demo.{side}"
                expected = [f"{side} {i}" for i in range(1, 11)]
                got = [m for m in browser.execute_script("return window.ws") if m[0] == stream]
                self.assertEqual(got, [[stream, i, text] for i, text in enumerate(expected, 1)])
                events = [
                    m for m in browser.execute_script("return window.sse") if m[0].startswith(stream + "/")
                ]
                self.assertEqual([data for _, data in events], expected)
                self.assertEqual(
                    [int(eventId.rpartition("-")[2]) for eventId, _ in events], list(range(1, 11))
                )

            browser.get(self.url + "/?stream=demo.right")
            until(lambda: browser.execute_script("return next !== null"))
            publish("demo.left", "left 11")
            publish("demo.right", "right 11")
            until(lambda: "right 11" in browser.find_element(By.ID, "messages").text)
            self.assertNotIn("left", browser.find_element(By.ID, "messages").text)
            self.assertEqual(browser.find_element(By.ID, "chosen").text, "demo.right")
            until(
                lambda: (
                    {"demo.left", "demo.right", "default"}
                    <= {b.text for b in browser.find_elements(By.CSS_SELECTOR, "#streams button")}
                )
            )
            browser.save_screenshot(screenshot)

        d = self.inBrowser(scenario)
        d.addCallback(lambda _: print(f"\nscreenshot of the page of two streams: {screenshot}"))
        return d


class CompressedBrowserTests(_BrowserMixin, TestCase):
    """
    The daemon with C{--http-compress} seen by a browser.
    """

    compress = 64

    def test_pageShowsCompressedStream(self) -> None:
        """
        Chromium negotiates permessage-deflate for the live page's
        WebSocket and for one of several streams, and both show every
        message; the daemon sent fewer bytes than the messages hold.
        """

        def scenario(browser: Any) -> None:
            from selenium.webdriver.common.by import By

            browser.get(self.url + "/")
            until(lambda: browser.execute_script("return next !== null"))
            self.assertIn("permessage-deflate", browser.execute_script("return socket.extensions"))
            browser.execute_script(
                "window.got = []; window.several = null;"
                "const other = new WebSocket('ws://' + location.host + '/ws/default');"
                "other.onopen = () => { window.several = other.extensions; };"
                "other.onmessage = e => { if (!e.data.startsWith('\\u001e')) window.got.push(e.data); };"
            )
            until(lambda: browser.execute_script("return window.several !== null"))
            self.assertIn("permessage-deflate", browser.execute_script("return window.several"))
            before = self.service.hub.stats.bytesOut
            publisher = _Publisher(self.tcpPort)
            readings = ", ".join(
                f'{{"sensor": "temperature", "reading": {r}, "unit": "celsius"}}' for r in range(6)
            )
            sent = [f'{{"n": {i}, "site": "north", "readings": [{readings}]}}' for i in range(1, 41)]
            try:
                for message in sent:
                    publisher.send(message.encode())
                until(lambda: '"n": 40' in browser.find_element(By.ID, "messages").text)
                until(lambda: browser.execute_script("return window.got.length") == len(sent))
            finally:
                publisher.close()
            self.assertEqual(browser.execute_script("return window.got"), sent)
            payload = 2 * sum(map(len, sent))
            self.assertLess(self.service.hub.stats.bytesOut - before, payload / 2)

        return self.inBrowser(scenario)
