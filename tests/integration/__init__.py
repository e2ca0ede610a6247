"""
Integration tests: real processes (C{twistd streamd}, the client) and real
sockets on loopback.  C{make test} runs them with the unit tests in
C{tests/}; C{make test-unit} leaves them out.
"""
