"""
How much a connection reads at once, where the C{bigReads} shortcut lets
streamd choose (L{streamd.fanout.socketcursor.bigReadLimit}).

A read asks C{recv} for a buffer of its size, which CPython allocates before
it knows how much will come and then shrinks.  Above glibc's mmap threshold
(128 KiB at first) that buffer is a fresh mapping, and shrinking it a
C{mremap}: a publisher of small messages read with 512 KiB buffers cost the
daemon two more system calls a read and a page for each message it keeps.
So a connection starts at Twisted's 64 KiB and reads big only after a read
that brought that much: while the client sends faster than it is read.
"""

READ_SIZE = 512 * 1024
"""
The most a publishing connection reads at once.  In a burst of 64 KiB
messages to 10 subscribers the daemon delivered about 1.4x as much with
reads of 512 KiB as of 256 KiB (every publish goes to every subscriber, so
fewer, bigger ones are cheaper), and less with 1 MiB (docs/benchmarks.rst).
"""

SMALL_READ = 64 * 1024
"""
What a connection reads at first and after a read that brought less:
Twisted's own size.
"""


def readTarget(received: int, limit: int) -> int:
    """
    About how much to read next after a read that brought C{received}
    bytes: C{limit} if that was L{SMALL_READ} or more, L{SMALL_READ} if less.
    """
    return limit if received >= SMALL_READ else SMALL_READ
