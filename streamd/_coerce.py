"""
Option values that more than one command line of streamd takes
(C{twistd streamd}, C{python -m streamd.client}).
"""

from __future__ import annotations

from collections.abc import Callable


def port(lowest: int) -> Callable[[str], int]:
    """
    A C{usage.Options} coerce function for C{--port}: a TCP port number,
    from C{lowest} up to 65535 (0, "any free port", where listening; 1
    where connecting).
    """

    def coerce(value: str) -> int:
        if not value.isdigit() or not lowest <= int(value) <= 65535:
            raise ValueError(f"--port must be a number from {lowest} to 65535, not {value!r}")
        return int(value)

    coerce.coerceDoc = ""  # type: ignore[attr-defined]
    return coerce
