"""
The benchmark's own tests, beside it (as C{twisted.test} is beside
Twisted): C{python -m twisted.trial bench.test}.  streamd's suite
in C{tests/} does not import the benchmark; it runs these in a subprocess.
"""
