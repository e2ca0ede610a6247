"""
Docs that run: every command block of C{README.rst} and C{docs/*.rst} is
run, in a fresh directory, against a fresh daemon, with the placeholders of
L{substitute} in place; and the option tables of C{docs/running.rst} and
C{docs/client.rst} are the ones L{docs.optiontable} makes from the
C{Options} classes.

A command that starts a daemon (C{twistd -n}, C{make run}) or a client that
reads the stream runs in the background until it says it is ready (the
daemon's C{listening on} lines, the client's first line) and is stopped when
its block is done; any other command must exit 0.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from ..docblocks import ROOT, Block, blocks, documents, twistdArguments

VENV_BIN = os.path.dirname(sys.executable)

PORTS = ("7000", "7001", "7002", "7003", "7010", "7443", "8080", "8443")
"""
The ports the docs name: each is a free port of the block's own.
"""

_PEM = os.path.join(ROOT, "tests", "integration", "localhost.pem")
_WAIT = 30.0


def freePort() -> str:
    """
    A loopback port that was free a moment ago.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return str(probe.getsockname()[1])


def substitute(command: str, workspace: str, ports: dict[str, str]) -> str:
    """
    C{command} with the docs' placeholders replaced, the one table of them:

      - C{.venv/bin/} is the bin directory of the venv running the tests;
      - C{make} runs the checkout's Makefile, C{make run} on the port that
        stands for 7000;
      - each port in L{PORTS} is a free port (the same one throughout a
        block);
      - C{interface=0.0.0.0} is C{interface=127.0.0.1}, and the host name
        C{stream.example.org} is C{localhost};
      - C{/etc/}, C{/run/}, C{/var/log/} and C{/tmp/} are directories of
        the block's own (C{workspace});
      - C{some-program} prints two lines;
      - a C{streamd.client} that names no port connects to the one that
        stands for 7000, its default, and a C{twistd streamd} that names no
        port or listener listens there.
    """
    # The directories first: the checkout, the venv and the workspace may
    # themselves be under /tmp.
    command = re.sub(r"(?<![\w.])/(etc|run|var/log|tmp)/", lambda m: f"{workspace}/{m.group(1)}/", command)
    command = re.sub(r"\b(" + "|".join(PORTS) + r")\b", lambda m: ports[m.group(1)], command)
    command = command.replace(".venv/bin/", VENV_BIN + "/")
    command = re.sub(
        r"^make (run\b)?",
        lambda m: f"make -C {ROOT} " + (f"run PORT={ports['7000']}" if m.group(1) else ""),
        command,
    )
    command = command.replace("interface=0.0.0.0", "interface=127.0.0.1")
    command = command.replace("stream.example.org", "localhost")
    command = command.replace("some-program", "printf 'one\\ntwo\\n'")
    if "streamd.client" in command and not re.search(r" (--port|-p|--connect|-c) ", command):
        command = command.replace("streamd.client", f"streamd.client --port {ports['7000']}", 1)
    arguments = twistdArguments(command)
    if arguments is not None and not {"--port", "-p", "--listen"} & {a.split("=")[0] for a in arguments}:
        command = re.sub(r"(?<=\s)streamd(?=\s|$)", f"streamd --port {ports['7000']}", command, count=1)
    return command


def prepare(workspace: str) -> None:
    """
    What every block finds in its directory: C{server.key} and
    C{server.pem} (a self-signed pair for localhost), C{read.token} and
    C{publish.token}, and the directories that stand for C{/etc/streamd},
    C{/run}, C{/var/log} and C{/tmp}.
    """
    for directory in ("etc/streamd", "run", "var/log", "tmp"):
        os.makedirs(os.path.join(workspace, directory))
    for name in ("server.key", "server.pem"):
        shutil.copy(_PEM, os.path.join(workspace, name))
    for name in ("read.token", "publish.token"):
        with open(os.path.join(workspace, name), "w") as f:
            f.write(f"{name}-secret\n")


class Running:
    """
    A background command and what it printed so far.
    """

    def __init__(self, command: str, workspace: str) -> None:
        self.command = command
        self.output = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}" if "|" not in command else command],
            cwd=workspace,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def text(self) -> str:
        self.output.seek(0)
        return self.output.read().decode(errors="replace")

    def waitUntil(self, ready: re.Pattern[str], count: int = 1) -> None:
        """
        Wait until C{ready} matches C{count} times in the output.

        @raise AssertionError: if the command exits first, or takes too long.
        """
        deadline = time.monotonic() + _WAIT
        while len(ready.findall(self.text())) < count and self.process.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.command!r} is not ready:\n{self.text()}")
            time.sleep(0.05)
        if self.process.poll() is not None:
            raise AssertionError(f"{self.command!r} ended (status {self.process.poll()}):\n{self.text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.output.close()


_LISTENING = re.compile(r"streamd listening on ")
_LINE = re.compile(r"\n")


def _listeners(arguments: list[str]) -> int:
    listens = arguments.count("--listen") + arguments.count("--http")
    return listens + (1 if "--port" in arguments or "--listen" not in arguments else 0)


def _daemonCommand(command: str) -> list[str] | None:
    """
    The C{streamd} arguments of a command that runs a daemon in the
    foreground (C{twistd -n}), else C{None}.
    """
    arguments = twistdArguments(command)
    words = shlex.split(command)
    return arguments if arguments is not None and "-n" in words else None


def _readsStream(command: str) -> bool:
    words = shlex.split(command)
    return "streamd.client" in words and ("--count" not in words or "--resume" in words)


def runBlock(case: SynchronousTestCase, block: Block, earlier: list[Block]) -> None:
    """
    Run C{block} in a fresh directory, after the file-making commands of
    the C{earlier} blocks of its document; with a fresh daemon on the port
    that stands for 7000 when it starts none of its own.
    """
    workspace = tempfile.mkdtemp()
    case.addCleanup(shutil.rmtree, workspace, True)
    prepare(workspace)
    ports = {port: freePort() for port in PORTS}
    running: list[Running] = []
    daemons: list[Running] = []

    def stopAll() -> None:
        for process in running:
            process.stop()

    case.addCleanup(stopAll)
    for previous in earlier:
        for command in previous.commands:
            if command.split()[0] in ("openssl", "printf"):
                foreground(case, substitute(command, workspace, ports), workspace)
    commands = [substitute(command, workspace, ports) for command in block.commands]
    if not any(twistdArguments(c) is not None or c.startswith("make ") for c in commands):
        daemon = Running(f"{VENV_BIN}/twistd -n --pidfile= streamd --port {ports['7000']}", workspace)
        running.append(daemon)
        daemon.waitUntil(_LISTENING)
    for command in commands:
        arguments = _daemonCommand(command)
        if arguments is not None or re.search(r"\brun PORT=", command):
            for daemon in daemons:
                daemon.stop()
            process = Running(command, workspace)
            running.append(process)
            daemons = [process]
            process.waitUntil(_LISTENING, _listeners(arguments or []))
        elif _readsStream(command):
            process = Running(command, workspace)
            running.append(process)
            process.waitUntil(_LINE)
        else:
            foreground(case, command, workspace)


def foreground(case: SynchronousTestCase, command: str, workspace: str) -> None:
    """
    Run C{command} to its end; it must exit 0.
    """
    done = subprocess.run(
        ["bash", "-c", command], cwd=workspace, stdin=subprocess.DEVNULL, capture_output=True, timeout=120
    )
    case.assertEqual(done.returncode, 0, f"{command!r}:\n{done.stdout.decode()}{done.stderr.decode()}")


class DocCommandTests(SynchronousTestCase):
    """
    One test per command block of the docs (added below), named after its
    document and line.
    """


def _addTests() -> None:
    for document in documents():
        found = blocks(document)
        for number, block in enumerate(found):

            def test(
                self: SynchronousTestCase, block: Block = block, earlier: list[Block] = found[:number]
            ) -> None:
                if block.skip is not None:
                    raise SkipTest(block.skip)
                runBlock(self, block, earlier)

            name = re.sub(r"\W", "_", block.where.replace(".rst", ""))
            test.__name__ = f"test_{name}"
            test.__doc__ = f"The commands of {block.where} run as the docs say."
            setattr(DocCommandTests, test.__name__, test)


_addTests()


class OptionTableTests(SynchronousTestCase):
    """
    The option tables of the docs are generated from the C{Options}
    classes, so they cannot drift.
    """

    def test_tablesCurrent(self) -> None:
        """
        Each generated table in the docs is what C{python docs/optiontable.py}
        makes now (run it to update them).
        """
        sys.path.insert(0, os.path.join(ROOT, "docs"))
        self.addCleanup(sys.path.remove, os.path.join(ROOT, "docs"))
        import optiontable

        for document, current, wanted in optiontable.tables():
            self.assertEqual(current, wanted, f"{document}: run python docs/optiontable.py")


class NoReactorTests(SynchronousTestCase):
    """
    C{streamd.tap} imports and installs no reactor while it parses.
    """

    def test_documentedCommandLines(self) -> None:
        """
        Every C{twistd streamd} command line of the docs, skipped blocks
        included, parses in a process that imports C{streamd.tap}, and no
        reactor is installed afterwards.
        """
        workspace = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, workspace, True)
        prepare(workspace)
        ports = {port: port for port in PORTS}
        lines = []
        for document in documents():
            for block in blocks(document):
                for command in block.commands:
                    arguments = twistdArguments(substitute(command, workspace, ports))
                    if arguments is not None:
                        lines.append(arguments)
                        _placeholderFiles(workspace, arguments)
        self.assertGreater(len(lines), 10)
        code = (
            "import sys, streamd.tap\n"
            f"for argv in {lines!r}:\n"
            "    streamd.tap.Options().parseOptions(argv)\n"
            "assert 'twisted.internet.reactor' not in sys.modules, 'a reactor was installed'\n"
        )
        done = subprocess.run([sys.executable, "-c", code], cwd=workspace, capture_output=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stderr.decode())


def _placeholderFiles(workspace: str, arguments: list[str]) -> None:
    """
    Make the files that C{arguments} name and that do not exist: PEM files
    hold a key and its certificate, access files a token that reads every
    stream, the others a token.
    """
    for argument in arguments:
        for path in re.findall(r"(?:^|[=:])((?:/|\w)[\w./-]*\.(?:pem|key|creds|token|access))\b", argument):
            full = os.path.join(workspace, path)
            if not os.path.exists(full):
                os.makedirs(os.path.dirname(full), exist_ok=True)
                if path.endswith((".pem", ".key")):
                    shutil.copy(_PEM, full)
                else:
                    with open(full, "w") as f:
                        f.write("secret read=>\n" if path.endswith(".access") else "secret\n")
