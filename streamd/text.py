"""
Showing message payloads as one line of text.
"""

from __future__ import annotations

_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r"}


def printable(payload: bytes) -> str:
    """
    C{payload} as one line: the UTF-8 text itself when it is valid and has no
    line breaks, otherwise an unambiguous escaped form (backslashes doubled,
    C{\\n}, C{\\r} and C{\\xNN} for bytes that are not UTF-8).
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if "\n" not in text and "\r" not in text:
            return text
    escaped = payload.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return escaped.translate(_ESCAPES)


def preview(payload: bytes, width: int = 80) -> str:
    """
    The start of C{payload}, as one line of at most C{width} characters.
    """
    text = printable(payload[: width * 4])
    if len(text) > width or len(payload) > width * 4:
        return text[: width - 1] + "\u2026"
    return text
