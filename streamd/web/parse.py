"""
What a web client sends, read strictly: a header as text, a number in a
URL or a control message.  Input that does not parse is the client's error
(L{BadInput}, answered with a 4xx and one line saying why), never an
exception of the daemon's.
"""

from __future__ import annotations

from twisted.web.server import Request

from streamd.printable import printable

MAX_DIGITS = 20
"""
The most digits of a number a client sends: a sequence number (at most
2**64 - 1) has 20.
"""


class BadInput(ValueError):
    """
    A client sent something that does not parse: its str says why.
    """


def decimal(text: str, name: str) -> int:
    """
    The number C{text} writes: ASCII digits only, at most L{MAX_DIGITS} of
    them (C{str.isdigit} takes C{"²"}, which C{int} refuses, and C{int}
    refuses more than 4300 digits).

    @param name: what the number is, for the error: C{"last"}.
    @raise BadInput: for anything else.
    """
    if not (0 < len(text) <= MAX_DIGITS and text.isascii() and text.isdigit()):
        raise BadInput(f"{name}={shown(text)}, which is not a number of at most {MAX_DIGITS} digits")
    return int(text)


def header(request: Request, name: bytes) -> str | None:
    """
    The text (UTF-8) of C{request}'s header C{name}, or C{None} without one.

    @raise BadInput: for a value that is not UTF-8.
    """
    value = request.getHeader(name)
    if value is None:
        return None
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise BadInput(f"a {name.decode('ascii')} header that is not UTF-8: {shown(value)}") from None


def shown(value: str | bytes, width: int = 40) -> str:
    """
    What a client sent, as an error quotes it: the start of it, quoted, in
    ASCII (an error may end up in an HTTP status line).
    """
    sent = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    text = printable(sent[:width]).encode("ascii", "backslashreplace").decode("ascii")
    return f"'{text}...'" if len(sent) > width else f"'{text}'"
