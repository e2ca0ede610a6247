"""
Where each process's CPU went, from a C{perf record -g} of a bench run:
C{python -m bench.perfshares perf.data PID=NAME ...}.

Each sample is put in one bucket by its call chain: the system call it is
in (send, receive, C{epoll_wait}, C{epoll_ctl}, another), other kernel work
(interrupts, softirqs: on loopback, much of a receiver's TCP work runs in
its sender's C{send}), or user space (the interpreter's bytecode loop,
Python's object allocation, C{malloc}/C{free}/C{memcpy}, Python's other C
code, the rest by its shared object: an installed package's, such as the
OpenSSL in C{cryptography}'s wheel, is not Python's).  The table in docs/benchmarks.rst ("Where the time goes
in the TCP cells") was made with it.
"""

from __future__ import annotations

import argparse
import re
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence

_FRAME = re.compile(r"\s*[0-9a-f]+ (.*) \((.*)\)$")

_SYSCALLS = (
    ("kernel: send", ("sendmsg", "sendto")),
    ("kernel: recv", ("recvfrom", "recvmsg")),
    ("kernel: epoll_wait", ("epoll_wait", "ep_poll")),
    ("kernel: epoll_ctl", ("epoll_ctl",)),
)


def bucket(chain: Sequence[tuple[str, str]]) -> str:
    """
    The bucket of one sample, from its call chain (innermost first) of
    C{(symbol, object)} pairs.
    """
    for name, _ in chain:
        for label, marks in _SYSCALLS:
            if any(mark in name for mark in marks):
                return label
    if not chain:
        return "unknown"
    top, where = chain[0]
    if "kernel" in where:
        if any("syscall" in name for name, _ in chain):
            return "kernel: other system calls, entry and exit"
        return "kernel: interrupts and other"
    if "libc" in where and re.search(r"malloc|free|memcpy|memmove|chunk|realloc", top):
        return "libc: malloc, free, memcpy"
    if re.search(r"[Mm]alloc|[Ff]ree|dealloc|NewReference|_alloc", top):
        return "python: objects made and freed"
    if "EvalFrame" in top:
        return "python: bytecode loop"
    if "python" in where and "site-packages" not in where:
        return "python: other C code"
    return "other: " + where.rsplit("/", 1)[-1]


def samples(script: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """
    The pid and call chain of each sample of C{perf script -F pid,tid,ip,sym,dso}'s output.
    """
    for block in script.split("\n\n"):
        lines = [line for line in block.splitlines() if line.strip()]
        if lines:
            chain = [(m.group(1), m.group(2)) for m in map(_FRAME.match, lines[1:]) if m]
            yield lines[0].split("/")[0].strip(), chain


def shares(script: str, names: dict[str, str]) -> dict[str, Counter[str]]:
    """
    Samples per bucket, per process name (C{names} maps pids to names; the
    other pids are "other").
    """
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for pid, chain in samples(script):
        counts[names.get(pid, "other")][bucket(chain)] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", help="perf.data of perf record -g")
    parser.add_argument("names", nargs="+", help="PID=NAME for each process to show")
    options = parser.parse_args()
    names = dict(item.split("=", 1) for item in options.names)
    script = subprocess.run(
        ["perf", "script", "-i", options.data, "-F", "pid,tid,ip,sym,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    counts = shares(script, names)
    total = sum(sum(c.values()) for c in counts.values())
    for name, buckets in sorted(counts.items(), key=lambda item: -sum(item[1].values())):
        mine = sum(buckets.values())
        print(f"{name}: {100 * mine / total:.0f}% of the samples")
        for label, count in buckets.most_common():
            if count * 100 >= mine:
                print(f"    {label:44} {100 * count / mine:5.1f}%")


if __name__ == "__main__":
    main()
