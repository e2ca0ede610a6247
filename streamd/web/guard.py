"""
Who may read the daemon's figures (C{/metrics}, C{/connz}).
"""

from __future__ import annotations

from twisted.web.server import Request

from streamd.web.context import WebContext, bearerToken


def requestToken(request: Request) -> bytes | None:
    """
    The token a request presents: C{Authorization: Bearer}, else a C{token}
    query parameter.
    """
    token = bearerToken(request.getHeader("authorization"))
    if token is None:
        values = request.args.get(b"token")
        token = values[0] if values else None
    return token


def refused(context: WebContext, request: Request) -> bytes | None:
    """
    The body of a 401 answer if C{request} may not read the figures, else
    C{None}: they are open with C{--http-public-metrics} or without
    C{--auth-token-file}, and otherwise need the token.
    """
    if context.publicMetrics or context.tokenAccepted(requestToken(request)):
        return None
    context.hub.stats.authFailures += 1
    request.setResponseCode(401)
    request.setHeader("WWW-Authenticate", "Bearer")
    request.setHeader("Content-Type", "text/plain; charset=utf-8")
    return b"a token is needed: Authorization: Bearer TOKEN (or --http-public-metrics)\n"
