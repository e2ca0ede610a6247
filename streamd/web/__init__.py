"""
streamd over HTTP (C{--http ENDPOINT}): WebSocket and Server-Sent Events
subscribers, a live page, metrics, health and connection listings, served
by C{twisted.web} on the daemon's reactor and hub.

One module per job: L{streamd.web.framing} (how the stream looks on the
web), L{streamd.web.context} (what both web transports read from a request
alike), L{streamd.web.websocket} and L{streamd.web.sse} (the adapters of a
session to each), L{streamd.web.metrics}, L{streamd.web.connz},
L{streamd.web.healthz}, and L{streamd.web.site}, which puts them together
under one root.
"""
