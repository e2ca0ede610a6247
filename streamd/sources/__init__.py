"""
Sources: what feeds messages into the hub besides the clients.

A source is a service that publishes into the hub while it runs and can be
paused by it (block mode).  A new kind of source is one class here and one
entry in L{SOURCES}.
"""

from __future__ import annotations

from streamd._errors import ConfigError
from streamd.sources.base import Source, SourceContext
from streamd.sources.clock import ClockSource
from streamd.sources.exec import ExecSource, ShellSource
from streamd.sources.follow import FileSource
from streamd.sources.stdin import StdinSource

SOURCES: dict[str, type[Source]] = {
    "clock": ClockSource,
    "exec": ExecSource,
    "sh": ShellSource,
    "file": FileSource,
    "stdin": StdinSource,
}


class BadSourceSpec(ConfigError):
    """
    A C{--source} value that names no source or gives it a bad argument.
    """


def parseSource(spec: str) -> tuple[type[Source], object]:
    """
    The kind of source that C{spec} (C{NAME} or C{NAME:ARGUMENT}) names, and
    its parsed argument.

    @raise BadSourceSpec: with a message fit for the command line.
    """
    name, _, argument = spec.partition(":")
    kind = SOURCES.get(name)
    if kind is None:
        known = ", ".join(sorted(SOURCES))
        raise BadSourceSpec(f"unknown source {spec!r} (known: {known}, or none)")
    try:
        return kind, kind.parseArgument(argument)
    except ValueError as e:
        raise BadSourceSpec(f"bad source {spec!r}: {e}") from None


def makeSource(spec: str, context: SourceContext) -> Source:
    """
    The source that C{spec} describes, ready to start.
    """
    kind, argument = parseSource(spec)
    source = kind(context, argument)
    source.spec = spec
    return source


__all__ = ["SOURCES", "BadSourceSpec", "Source", "SourceContext", "makeSource", "parseSource"]
