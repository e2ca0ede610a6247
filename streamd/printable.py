"""
Showing message payloads as one line of text.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    if character.isprintable():
        return character
    named = _NAMED.get(character)
    if named is not None:
        return named
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(payload: bytes) -> str:
    """
    C{payload} as one line of harmless text: the UTF-8 text itself when it is
    valid and every character prints, otherwise an unambiguous escaped form
    (backslashes doubled; C{\\n}, C{\\t}, C{\\xNN} and C{\\uNNNN} for
    line breaks, control and format characters and terminal escapes, and
    C{\\xNN} for bytes that are not UTF-8).
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if text.isprintable():
            return text
    escaped = payload.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
    return "".join(map(_escape, escaped))


def preview(payload: bytes | memoryview, width: int = 80) -> str:
    """
    The start of C{payload}, as one line of at most C{width} characters.
    """
    text = printable(bytes(payload[: width * 4]))
    if len(text) > width or len(payload) > width * 4:
        return text[: width - 1] + "\u2026"
    return text
