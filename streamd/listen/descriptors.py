"""
Fitting C{--max-clients} to the descriptors the daemon may open.

Every client holds one descriptor, and the daemon needs some of its own:
its listeners, its sources' pipes and files, its log, its cluster link, the
files its site serves.  When clients take them all, every listener fails to
accept and a source cannot start again: the daemon refuses everyone, and
says nothing.  So the daemon keeps L{RESERVE} descriptors out of its
clients' reach, raises its soft limit (C{RLIMIT_NOFILE}) to what
C{--max-clients} needs where the hard limit allows, and otherwise serves as
many clients as the limit leaves, refusing the others with a reason.
"""

from __future__ import annotations

import resource
from collections.abc import Callable

RESERVE = 100
"""
Descriptors kept for the daemon itself, out of its clients' reach.
"""

Limits = tuple[int, int]


def fitClients(
    maxClients: int,
    getLimit: Callable[[], Limits] = lambda: resource.getrlimit(resource.RLIMIT_NOFILE),
    setLimit: Callable[[Limits], None] = lambda limits: resource.setrlimit(resource.RLIMIT_NOFILE, limits),
) -> tuple[int, int, int]:
    """
    Raise the soft descriptor limit, as far as the hard one allows, to what
    C{maxClients} clients and the L{RESERVE} need.

    @return: how many clients may connect at once (C{maxClients}, or fewer
        when the limit leaves fewer), and the soft limit before and after.
    """
    soft, hard = getLimit()
    needed = maxClients + RESERVE
    raised = soft
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        setLimit((raised, hard))
    if raised == resource.RLIM_INFINITY:
        return maxClients, soft, raised
    return max(min(maxClients, raised - RESERVE), 0), soft, raised
