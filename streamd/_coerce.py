"""
Option values that more than one command line takes (C{twistd streamd},
C{python -m streamd.client}, C{python -m bench}): C{usage.Options} coerce
functions, whose C{ValueError} is the one-line message the user sees, and
that line itself.

A coerce function checks the form of a value (a number, a name); whether a
daemon setting fits the others is its config object's rule
(L{streamd.config}).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from twisted.python import usage

_ENFORCEMENT = "Parameter type enforcement failed: "


def number(
    kind: Callable[[str], Any], option: str, what: str, minimum: float = 0, inclusive: bool = True
) -> Callable[[str], Any]:
    """
    A finite number made by C{kind} (C{int} or C{float}), at least (or, not
    C{inclusive}, above) C{minimum}.

    @param what: what the number is, for the message: C{"a size in bytes"}.
    """

    def coerce(value: str) -> Any:
        try:
            found = kind(value)
        except ValueError:
            found = None
        if found is None or not math.isfinite(found) or found < minimum or (found == minimum and not inclusive):
            bound = f"at least {minimum:g}" if inclusive else f"greater than {minimum:g}"
            raise ValueError(f"--{option} must be {what}, {bound}, not {value!r}")
        return found

    return coerce


def seconds(option: str, minimum: float = 0, inclusive: bool = True) -> Callable[[str], float]:
    """
    A time in seconds, at least (or, not C{inclusive}, above) C{minimum}.
    """
    return number(float, option, "a time in seconds", minimum, inclusive)


def duration(option: str) -> Callable[[str], float]:
    """
    A time greater than 0: seconds, or with a unit (C{90s}, C{10m}, C{2h},
    C{1d}).
    """
    from streamd.since import parseDuration

    def coerce(value: str) -> float:
        try:
            found = parseDuration(value)
        except ValueError as e:
            raise ValueError(f"--{option}: {e}") from None
        if found <= 0:
            raise ValueError(f"--{option} must be greater than 0, not {value!r}")
        return found

    return coerce


def size(option: str, minimum: int = 0) -> Callable[[str], int]:
    """
    A size in bytes, C{minimum} or more.
    """
    return number(int, option, "a size in bytes", minimum)


def count(option: str, minimum: int = 0) -> Callable[[str], int]:
    """
    A whole number, C{minimum} or more.
    """
    return number(int, option, "a whole number", minimum)


def choice(option: str, *choices: str) -> Callable[[str], str]:
    """
    One of C{choices}.
    """

    def coerce(value: str) -> str:
        if value not in choices:
            raise ValueError(f"--{option} must be {' or '.join(choices)}, not {value!r}")
        return value

    return coerce


def port(lowest: int) -> Callable[[str], int]:
    """
    A TCP port number for C{--port}, from C{lowest} up to 65535 (0, "any
    free port", where listening; 1 where connecting).
    """

    def coerce(value: str) -> int:
        if not value.isdigit() or not lowest <= int(value) <= 65535:
            raise ValueError(f"--port must be a number from {lowest} to 65535, not {value!r}")
        return int(value)

    return coerce


def oneLine(error: usage.UsageError) -> str:
    """
    A usage error's message as the user should read it: without the words
    C{usage.Options} puts before a coerce function's own message.
    """
    return str(error).removeprefix(_ENFORCEMENT)
