"""
Cutting a byte stream into lines, one message per line, with bounded memory:
what the line sources and the client's C{--stdin} share.

A line ends at C{\\n}; the C{\\n} and a C{\\r} just before it are removed, so
CRLF output gives the same messages as LF output.  An empty line is an empty
message.  A line longer than the limit is skipped, never split, and while it
is skipped its bytes are counted, not kept.
"""

from __future__ import annotations

from collections.abc import Callable


class LineSplitter:
    """
    Cuts chunks of a byte stream into lines of at most C{maxLength} bytes.

    @param onSkip: called as C{onSkip(length, finished)} for a line over
        C{maxLength}: once with C{finished=False} when a line that has not
        ended yet goes over the limit (C{length} is what arrived so far), and
        once with C{finished=True} and its whole length when it ends.
    """

    def __init__(self, maxLength: int, onSkip: Callable[[int, bool], object] | None = None) -> None:
        self.maxLength = maxLength
        self._onSkip = onSkip
        self._partial: list[bytes] = []
        self._partialLength = 0
        self._skipped: int | None = None
        self._quiet = False

    @property
    def pending(self) -> int:
        """
        Bytes taken since the end of the last line: those of the line begun
        (or being skipped).
        """
        return self._partialLength if self._skipped is None else self._skipped

    def feed(self, data: bytes) -> list[bytes]:
        """
        Take the next bytes; return the lines they complete.
        """
        pieces = data.split(b"\n")
        rest = pieces.pop()
        lines: list[bytes] = []
        if pieces:
            if self._skipped is not None:
                self._endSkip(self._skipped + len(pieces[0]))
                del pieces[0]
            elif self._partial:
                self._partial.append(pieces[0])
                pieces[0] = b"".join(self._partial)
                self._partial = []
                self._partialLength = 0
            maxLength = self.maxLength
            for piece in pieces:
                line = piece[:-1] if piece.endswith(b"\r") else piece
                if len(line) > maxLength:
                    self._skip(len(piece), True)
                else:
                    lines.append(line)
        if rest:
            self._keep(rest)
        return lines

    def finish(self) -> list[bytes]:
        """
        The input ended: its last line, if it had no newline.
        """
        if self._skipped is not None:
            self._endSkip(self._skipped)
            return []
        if not self._partial:
            return []
        piece = b"".join(self._partial)
        self._partial = []
        self._partialLength = 0
        return self.feed(piece + b"\n")

    def reset(self) -> None:
        """
        Forget the unfinished line, if any, without a word.
        """
        self._partial = []
        self._partialLength = 0
        self._skipped = None
        self._quiet = False

    def skipToNextLine(self) -> None:
        """
        Quietly drop everything up to the next newline: the input starts in
        the middle of a line.
        """
        self.reset()
        self._skipped = 0
        self._quiet = True

    def _keep(self, rest: bytes) -> None:
        if self._skipped is not None:
            self._skipped += len(rest)
            return
        length = self._partialLength + len(rest)
        # One byte more than the limit may be the "\r" of a CRLF.
        if length > self.maxLength + 1:
            self._partial = []
            self._partialLength = 0
            self._skipped = length
            self._skip(length, False)
        else:
            self._partial.append(rest)
            self._partialLength = length

    def _endSkip(self, length: int) -> None:
        quiet = self._quiet
        self._skipped = None
        self._quiet = False
        if not quiet:
            self._skip(length, True)

    def _skip(self, length: int, finished: bool) -> None:
        if self._onSkip is not None:
            self._onSkip(length, finished)
