"""
streamd: a live-data streaming daemon on Twisted.

Every message is one frame (a 4-byte unsigned big-endian length, then the
payload) pushed to every connected client.
"""

from streamd.client import StreamClientFactory, StreamClientProtocol, connect
from streamd.framing import ASCII10, DEFAULT_MAX_MESSAGE_SIZE, INT32, Framing
from streamd.hub import Hub
from streamd.server import ServerConfig, StreamServerFactory, StreamServerProtocol
from streamd.service import DaemonConfig, Listen, StreamdService

__all__ = [
    "ASCII10",
    "DEFAULT_MAX_MESSAGE_SIZE",
    "INT32",
    "DaemonConfig",
    "Framing",
    "Hub",
    "Listen",
    "ServerConfig",
    "StreamClientFactory",
    "StreamClientProtocol",
    "StreamServerFactory",
    "StreamServerProtocol",
    "StreamdService",
    "connect",
]
