"""
Who may read the daemon's figures (C{/metrics}, C{/connz}).
"""

from __future__ import annotations

from twisted.web.server import Request

from streamd.auth import Access
from streamd.reasons import Reason
from streamd.web.context import WebContext, bearerToken


def refused(context: WebContext, request: Request) -> bytes | None:
    """
    The body of a 401 answer if C{request} may not read the figures, else
    C{None}: they are open with C{--http-public-metrics} or without
    C{--auth-token-file}, and otherwise need the token, in an
    C{Authorization: Bearer} header only (a URL ends up in access logs).
    """
    if context.publicMetrics:
        return None
    policy = context.config.access
    token = bearerToken(request.getHeader(b"authorization"))
    access = policy.initialAccess() if token is None else policy.accessFor(token)
    if access is not Access.NONE:
        return None
    context.hub.stats.disconnects[Reason.AUTH_FAILED] += 1
    request.setResponseCode(401)
    request.setHeader("WWW-Authenticate", "Bearer")
    request.setHeader("Content-Type", "text/plain; charset=utf-8")
    return b"a token is needed: Authorization: Bearer TOKEN (or --http-public-metrics)\n"
