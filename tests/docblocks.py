"""
The command blocks of C{README.rst} and C{docs/*.rst}, as the docs tests
run them (see C{docs/development.rst}, "Docs that run").

A literal block is a command block when its first line starts with a
command (L{COMMANDS}).  A block that cannot run here is marked in the doc
source by an RST comment (invisible in the rendered page) before it::

    .. docs-test: skip: REASON

and the test says REASON when it skips it.  Placeholders are substituted by
L{substitute}, the one table of them.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMANDS = (".venv/bin/", "make ", "sudo ", "openssl ", "some-program ", "twistd ", "python ", "kill ", "$ ", "curl ", "# ")
"""
How the first line of a command block starts.
"""

# twistd's options whose value is the next word.
_TWISTD_VALUED = ("-u", "-g", "--uid", "--gid", "--pidfile", "--logfile", "-l", "--reactor", "-r")
_SKIP = re.compile(r"^\.\. docs-test: skip: (.+)$")
_OPENS = re.compile(r"(::\s*$)|^\s*\.\. code-block::")


@dataclass
class Block:
    """
    One command block.

    @ivar where: C{file:line} of its first line.
    @ivar commands: its commands, continuation lines joined, comments and
        blank lines left out.
    @ivar skip: the reason its marker gives, or C{None}.
    """

    where: str
    commands: list[str] = field(default_factory=list)
    skip: str | None = None


def documents() -> list[str]:
    """
    The documents whose blocks are run, relative to the checkout.
    """
    return ["README.rst", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.rst")))]


def blocks(document: str) -> list[Block]:
    """
    The command blocks of C{document}.
    """
    lines = open(os.path.join(ROOT, document), encoding="utf-8").read().split("\n")
    found: list[Block] = []
    skip: str | None = None
    index = 0
    while index < len(lines):
        line = lines[index]
        marker = _SKIP.match(line)
        if marker:
            skip = marker.group(1)
        index += 1
        if not _OPENS.search(line) or line.strip().startswith(".. docs-test"):
            continue
        start = index
        while start < len(lines) and not lines[start].strip():
            start += 1
        if start == len(lines) or not lines[start].startswith(" "):
            continue
        indent = len(lines[start]) - len(lines[start].lstrip())
        end = start
        while end < len(lines) and (not lines[end].strip() or lines[end].startswith(" " * indent)):
            end += 1
        text = [raw[indent:] for raw in lines[start:end]]
        index = end
        if text[0].startswith(COMMANDS):
            found.append(Block(f"{document}:{start + 1}", _commands(text), skip))
        skip = None
    return found


def _commands(text: list[str]) -> list[str]:
    joined: list[str] = []
    pending = ""
    for line in text:
        if pending:
            line = pending + " " + line.strip()
            pending = ""
        if line.endswith("\\"):
            pending = line[:-1].rstrip()
            continue
        if line.strip() and not line.lstrip().startswith("#"):
            joined.append(line.strip())
    return joined


def twistdArguments(command: str) -> list[str] | None:
    """
    The arguments after C{streamd} of a command that runs C{twistd
    streamd}, or C{None}.
    """
    if "twistd" not in command:
        return None
    words = shlex.split(command, comments=True)
    names = [os.path.basename(word) for word in words]
    if "twistd" not in names:
        return None
    start = names.index("twistd")
    for index in range(start + 1, len(words)):
        # The subcommand, not the value of twistd's -u streamd.
        if words[index] == "streamd" and words[index - 1] not in _TWISTD_VALUED:
            return words[index + 1 :]
    return None
