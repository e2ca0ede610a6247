"""
streamd: a live-data streaming daemon on Twisted.

Every message is one frame (a 4-byte unsigned big-endian length, then the
payload) pushed to every connected client.

The public names below are imported on first use, so that C{import streamd}
(and C{python -m streamd.client}) does not load the daemon, the TLS stack and
the hundreds of modules they bring.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamd.client import StreamClientFactory, StreamClientProtocol, connect
    from streamd.config import ConfigError, DaemonConfig, FlowControl, Listen, ServerConfig
    from streamd.fanout.cursor import Cursor
    from streamd.fanout.history import History
    from streamd.fanout.hub import Hub
    from streamd.framing import ASCII10, DEFAULT_MAX_MESSAGE_SIZE, INT32, Framing
    from streamd.server import StreamServerFactory, StreamServerProtocol
    from streamd.service import StreamdService

_HOMES = {
    "ASCII10": "streamd.framing",
    "DEFAULT_MAX_MESSAGE_SIZE": "streamd.framing",
    "INT32": "streamd.framing",
    "Framing": "streamd.framing",
    "ConfigError": "streamd.config",
    "Cursor": "streamd.fanout.cursor",
    "History": "streamd.fanout.history",
    "FlowControl": "streamd.config",
    "Hub": "streamd.fanout.hub",
    "ServerConfig": "streamd.config",
    "StreamServerFactory": "streamd.server",
    "StreamServerProtocol": "streamd.server",
    "DaemonConfig": "streamd.config",
    "Listen": "streamd.config",
    "StreamdService": "streamd.service",
    "StreamClientFactory": "streamd.client",
    "StreamClientProtocol": "streamd.client",
    "connect": "streamd.client",
}

__all__ = [
    "ASCII10",
    "ConfigError",
    "Cursor",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "DaemonConfig",
    "FlowControl",
    "Framing",
    "History",
    "Hub",
    "INT32",
    "Listen",
    "ServerConfig",
    "StreamClientFactory",
    "StreamClientProtocol",
    "StreamServerFactory",
    "StreamServerProtocol",
    "StreamdService",
    "connect",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'streamd' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
