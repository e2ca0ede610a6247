"""
C{python -m bench}: how fast streamd fans messages out, and how that
compares with Redis pub/sub on the same machine.

A benchmark starts a server in a subprocess on 127.0.0.1, a publisher and
subscriber processes with plain sockets, and reports deliveries per second,
publish-to-receive latency, server CPU per message and server memory.
"""
