"""
Starting and stopping the servers under test, each in its own process on a
free loopback port.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from streamd.bench.proc import connectionCount, dieWithParent, rssBytes

BACKLOG = 511
"""
The listen backlog of both servers (Redis's default; Twisted's is 50, which
drops connections, and costs a second each, while 10,000 clients connect).
"""
STARTUP_SECONDS = 15.0
STOP_SECONDS = 3.0

_LISTENING = re.compile(rb"streamd listening on 127\.0\.0\.1:(\d+)")


def twistdCommand(*argv: str) -> list[str]:
    """
    The command line that runs twistd with C{argv} in this Python.
    """
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *argv]


class BenchError(Exception):
    """
    The benchmark cannot go on; the message is for the command line.
    """


class Server:
    """
    A running server process, logging to a file.
    """

    def __init__(self, name: str, process: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.name = name
        self.process = process
        self.pid = process.pid
        self.log = log
        self.port = port

    def rss(self) -> int:
        """
        Its resident memory, in bytes.
        """
        return rssBytes(self.pid)

    def waitClients(self, count: int, timeout: float) -> None:
        """
        Return once it has accepted C{count} client connections.

        @raise BenchError: after C{timeout} seconds, or if it exits.
        """
        deadline = time.monotonic() + timeout
        while (accepted := connectionCount(self.pid, self.port)) < count:
            self.checkAlive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} accepted {accepted} of {count} connections in {timeout:g} s")
            time.sleep(0.02)

    def checkAlive(self) -> None:
        """
        @raise BenchError: if the process has exited.
        """
        if self.process.poll() is not None:
            raise BenchError(f"{self.name} exited with status {self.process.returncode}: {_tail(self.log)}")

    def stop(self) -> None:
        """
        Stop the process: politely, then not.
        """
        _stop(self.process)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _tail(log: Path) -> str:
    lines = log.read_bytes().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=dieWithParent,
        )


def startStreamd(workdir: Path, options: list[str], twistdOptions: Sequence[str] = ()) -> Server:
    """
    A streamd daemon on a free loopback port, with no source and the given
    extra twistd plugin C{options} (and twistd's own C{twistdOptions}).
    """
    log = workdir / "streamd.log"
    argv = twistdCommand("-n", "--pidfile=", *twistdOptions, "streamd")
    argv += ["--listen", f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}", "--source", "none"]
    argv += ["--stats-interval", "0"]
    process = _spawn(argv + options, log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            found = _LISTENING.search(log.read_bytes())
            if found:
                return Server("streamd", process, log, int(found.group(1)))
            if process.poll() is not None:
                raise BenchError(f"streamd did not start: {_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"streamd did not say where it listens within {STARTUP_SECONDS:g} s")
            time.sleep(0.02)
    except BaseException:
        _stop(process)
        raise


def redisServer() -> str | None:
    """
    The path of C{redis-server}, if installed.
    """
    return shutil.which("redis-server")


def redisVersion() -> str:
    """
    What C{redis-server --version} says, shortened to the version.
    """
    path = redisServer()
    if path is None:
        return "not installed"
    out = subprocess.run([path, "--version"], capture_output=True, timeout=10).stdout.decode()
    found = re.search(r"v=(\S+)", out)
    return found.group(1) if found else out.strip()


REDIS_SETTINGS = ["--save", "", "--appendonly", "no", "--client-output-buffer-limit", "pubsub 0 0 0"]
"""
Persistence off, and no output limit for subscribers: the publisher's credit
window bounds every queue, so no limit should cut a subscriber (streamd gets
pending limits above the window for the same reason).
"""


def startRedis(workdir: Path, maxClients: int) -> Server:
    """
    A redis-server on a free loopback port, without persistence.
    """
    path = redisServer()
    if path is None:
        raise BenchError("redis-server is not installed (apt-get install redis-server)")
    log = workdir / "redis.log"
    port = _freePort()
    argv = [path, "--port", str(port), "--bind", "127.0.0.1", "--daemonize", "no", "--logfile", ""]
    argv += ["--maxclients", str(maxClients), "--tcp-backlog", str(BACKLOG), *REDIS_SETTINGS]
    process = _spawn(argv, log)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not _answersPing(port):
            if process.poll() is not None:
                raise BenchError(f"redis-server did not start: {_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"redis-server did not answer PING within {STARTUP_SECONDS:g} s")
            time.sleep(0.02)
        return Server("redis", process, log, port)
    except BaseException:
        _stop(process)
        raise


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _answersPing(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16) == b"+PONG\r\n"
    except OSError:
        return False
