"""
Listening: a listener service (L{listener}), streamd's endpoint
descriptions (L{endpoints}), accepting storms of connections (L{accept}),
and what the kernel says a connection took (L{tcpinfo}).
"""
