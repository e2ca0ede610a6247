"""
streamd's listeners as Twisted endpoint descriptions: C{streamd:} followed
by any server endpoint description, with parameters of streamd's own.

C{serverFromString(reactor, "streamd:tcp:7010:framing=ascii10")} finds
L{StreamdEndpointParser} through Twisted's plugin system
(C{twisted/plugins/streamd_endpoints.py}); it takes streamd's parameters out
(L{KEYWORDS}), gives TCP and TLS endpoints streamd's listen backlog, and
returns a L{StreamdEndpoint} that makes the endpoint the rest describes
when it is built.  Parsing reads no file: building does.

This module is imported when Twisted looks for endpoint plugins, so it
imports nothing heavy until an endpoint is built.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import quoteStringArgument, serverFromString
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
    IStreamServerEndpointStringParser,
)
from twisted.plugin import IPlugin
from zope.interface import implementer

from streamd.framing import Framing
from streamd.names import checkName

# The framings by name, with seq, which its module adds on import.
from streamd.seqframing import FRAMINGS

LISTEN_BACKLOG = 4096
"""
The listen backlog of TCP and TLS listeners that name none.  Twisted's
default (50), and Redis's 511, overflow when thousands of clients reconnect
at once (after a restart): the kernel then drops the handshake's last ACK of
some, and a subscriber, which sends nothing, never retries.  4096 is what
current Linux allows (C{net.core.somaxconn} caps it) and what Go's servers
ask for.
"""

KEYWORDS = ("framing", "clientCA", "stream")
"""
The parameters streamd takes out of a description: C{framing=NAME} (what
the listener's clients speak), C{clientCA=FILE} (an C{ssl:} listener
requires client certificates signed by a CA in that PEM file) and
C{stream=NAME} (the stream its clients read and publish to).
"""

_BACKLOGGED = ("tcp", "tcp6", "ssl")


def _quote(argument: str) -> str:
    # quoteStringArgument leaves "=", which would make a positional argument
    # a keyword one.
    return quoteStringArgument(argument).replace("=", "\\=")


@implementer(IStreamServerEndpoint)
class StreamdEndpoint:
    """
    A server endpoint with streamd's parameters: it makes the endpoint that
    L{description} describes when it is built, or listened on.

    @ivar description: the Twisted endpoint description, without streamd's
        parameters and with streamd's backlog.
    @ivar framing: what C{framing=} named, or C{None}.
    @ivar clientCA: what C{clientCA=} named, or C{None}.
    @ivar stream: what C{stream=} named, or C{None}.
    """

    def __init__(
        self,
        reactor: Any,
        args: tuple[str, ...],
        kwargs: dict[str, str],
        framing: Framing | None,
        clientCA: str | None,
        stream: str | None = None,
    ) -> None:
        self.reactor = reactor
        self.args = args
        self.kwargs = kwargs
        self.framing = framing
        self.clientCA = clientCA
        self.stream = stream
        self.description = ":".join(
            [*map(_quote, args), *(f"{key}={quoteStringArgument(value)}" for key, value in kwargs.items())]
        )

    @property
    def tls(self) -> bool:
        """
        Whether this is an C{ssl:} (TLS over TCP) endpoint.
        """
        return self.args[0] == "ssl"

    def build(self) -> IStreamServerEndpoint:
        """
        The endpoint to listen on, with C{clientCA} one that asks for client
        certificates.

        @raise streamd.config.ConfigError: for a file that cannot be used.
        @raise ValueError: for a description Twisted does not take, with a
            message from L{describeError}.
        """
        try:
            if self.clientCA is not None:
                from streamd.tls import mutualTLSEndpoint

                return mutualTLSEndpoint(self.reactor, self.args[1:], self.kwargs, self.clientCA)
            return serverFromString(self.reactor, self.description)  # type: ignore[no-any-return]
        except (IndexError, KeyError):
            # Twisted's systemd: parser looks the socket up by index or name.
            if self.args[0] != "systemd":
                raise
            raise ValueError(
                "systemd passed no such socket (LISTEN_FDS, LISTEN_FDNAMES): start it from a socket unit"
            ) from None

    def listen(self, protocolFactory: IProtocolFactory) -> Deferred[IListeningPort]:
        return self.build().listen(protocolFactory)  # type: ignore[no-any-return]


@implementer(IPlugin, IStreamServerEndpointStringParser)
class StreamdEndpointParser:
    """
    The C{streamd:} endpoint type (see the module's docstring).
    """

    prefix = "streamd"

    def parseStreamServer(self, reactor: Any, *args: Any, **kwargs: Any) -> StreamdEndpoint:
        ours = {key: kwargs.pop(key) for key in KEYWORDS if key in kwargs}
        if not args or not args[0]:
            raise ValueError("no endpoint type: give tcp:PORT, unix:PATH, ssl:PORT:privateKey=..., ...")
        name = ours.get("framing")
        if name is not None and name not in FRAMINGS:
            raise ValueError(f"unknown framing {name!r} (known: {', '.join(FRAMINGS)})")
        clientCA = ours.get("clientCA")
        if clientCA is not None and args[0] != "ssl":
            raise ValueError(f"client certificates need an ssl: endpoint, not {args[0]}:")
        stream = ours.get("stream")
        if stream is not None:
            checkName(stream)
        if args[0] in _BACKLOGGED and "backlog" not in kwargs:
            kwargs["backlog"] = str(LISTEN_BACKLOG)
        return StreamdEndpoint(
            reactor, args, kwargs, None if name is None else FRAMINGS[name], clientCA, stream
        )


def given(description: str) -> str:
    """
    A description as its user gave it, without the backlog that
    L{StreamdEndpointParser} adds at its end, for messages about it.
    """
    return description.removesuffix(f":backlog={LISTEN_BACKLOG}")


_MISSING = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.*)")
_UNEXPECTED = re.compile(r"unexpected keyword argument '(\w+)'")
_NOT_A_NUMBER = re.compile(r"invalid literal for int\(\) with base 10: ('.*')")


def describeError(error: Exception) -> str:
    """
    Why Twisted refused an endpoint description, in words for its user
    rather than in Python's: C{serverFromString} and C{clientFromString}
    pass the description's parts to a constructor, whose complaints name
    Python's arguments and types.
    """
    text = str(error)
    for pattern, say in (
        (_MISSING, lambda names: "no " + names.replace("'", "").replace(" and ", ", ") + " given"),
        (_UNEXPECTED, lambda name: f"unknown parameter {name}="),
        (_NOT_A_NUMBER, lambda value: f"{value} is not a number"),
    ):
        found = pattern.search(text)
        if found:
            return say(found.group(1))
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    if isinstance(error, TypeError) and "positional argument" in text:
        return "too many arguments"
    if text.startswith("Unknown endpoint type: "):
        return "unknown endpoint type " + text.removeprefix("Unknown endpoint type: ")
    return text or type(error).__name__
