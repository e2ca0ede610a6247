"""
streamd over HTTP (C{--http ENDPOINT}): WebSocket and Server-Sent Events
subscribers, a live page, metrics, health and connection listings, served
by C{twisted.web} on the daemon's reactor and hub.

One module per job: L{streamd.web.context} (what every HTTP subscriber
shares), L{streamd.web.resume} (starting a subscriber after a sequence
number), L{streamd.web.websocket}, L{streamd.web.sse},
L{streamd.web.metrics}, L{streamd.web.connz}, L{streamd.web.healthz}, and
L{streamd.web.site}, which puts them together under one root.
"""
