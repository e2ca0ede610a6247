"""
A point in time a client starts its stream at (C{seq}'s start SINCE, the
client's C{--since}, the web's C{?since=}): a duration ago (C{90s},
C{10m}, C{2h}, C{1d}, or plain seconds) or an ISO 8601 time
(C{2024-05-01T12:00:00Z}; without a zone, UTC), as milliseconds since 1970.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

_AGO = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parseDuration(text: str) -> float:
    """
    Seconds in C{text}: C{90}, C{90s}, C{10m}, C{2h}, C{1d}.

    @raise ValueError: with a message for the command line.
    """
    found = _AGO.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"{text!r} is not a duration (90s, 10m, 2h, 1d)")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parseSince(text: str, now: float) -> int:
    """
    The time C{text} names, in milliseconds since 1970: a duration before
    C{now} (seconds since 1970), or an ISO 8601 time.

    @raise ValueError: with a message for the command line.
    """
    try:
        return max(int((now - parseDuration(text)) * 1000), 0)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (90s, 10m, 2h, 1d) nor an ISO time (2024-05-01T12:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return max(int(moment.timestamp() * 1000), 0)
