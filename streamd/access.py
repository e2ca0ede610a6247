"""
The access file (C{--access-file}): tokens, and the streams each may read
and publish to, NATS-style.

One line a token, then what it may do::

    # prices for the web desk, and their own feed
    Kq3v0nJ1xS6bqkYw read=prices.>,news.* publish=desks.web.>
    sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 read=>

A token is written as it is (as in a token file) or as C{sha256:} and the
hex SHA-256 of it, so that the file need not hold the secret.  C{read=}
and C{publish=} take comma-separated stream names and patterns (C{*} one
token, C{>} the rest); a token may publish to a stream only where it may
read it, so C{publish=} grants reading as well.  C{#} starts a comment
where a word starts.  A mistake is one line naming the file and the line,
never the token.
"""

from __future__ import annotations

import hmac
import os
import stat
from collections.abc import Sequence

from streamd.auth import StreamRights, TokenFileError, digest
from streamd.names import BadName, PatternTrie, checkPattern

DIGEST_PREFIX = b"sha256:"
_KEYS = ("read", "publish")


class AccessFileError(TokenFileError):
    """
    An access file is missing, unreadable, empty, or says something wrong:
    its str names the file and the line.
    """


class TokenRights(StreamRights):
    """
    The streams one token of an access file may read and publish to: those
    its C{read} and C{publish} patterns match.  Publishing to a stream
    grants reading it, since a client of a listener bound to a stream is
    always its subscriber.
    """

    def __init__(self, read: Sequence[str], publish: Sequence[str]) -> None:
        self.read = tuple(read)
        self.publish = tuple(publish)
        self._reading = _trie((*self.read, *self.publish))
        self._publishing = _trie(self.publish)

    def reads(self, name: str) -> bool:
        return bool(self._reading.match(name))

    def publishes(self, name: str) -> bool:
        return bool(self._publishing.match(name))


def _trie(patterns: Sequence[str]) -> PatternTrie[str]:
    trie: PatternTrie[str] = PatternTrie()
    for pattern in patterns:
        trie.add(pattern, pattern)
    return trie


class AccessFile:
    """
    The rules of an access file, read now and again by L{load}.

    @ivar rawTokens: whether the file holds tokens as they are (rather
        than their C{sha256:} digests).
    """

    what = "access file"

    def __init__(self, path: str) -> None:
        self.path = path
        self._entries: tuple[tuple[bytes, TokenRights], ...] = ()
        self.rawTokens = False
        self.load()

    def load(self) -> None:
        """
        Read the rules now.

        @raise AccessFileError: if the file cannot be read or says something
            wrong; the previous rules then stay in force.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise AccessFileError(f"cannot read access file {self.path}: {e.strerror}") from None
        entries, raw = parseAccess(data, self.path)
        self._entries, self.rawTokens = tuple(entries), raw

    def __len__(self) -> int:
        return len(self._entries)

    def exposed(self) -> bool:
        """
        Whether the file holds tokens as they are and every user of the
        machine may read it.
        """
        try:
            mode = os.stat(self.path).st_mode
        except OSError:
            return False
        return self.rawTokens and bool(mode & stat.S_IROTH)

    def rightsFor(self, tokenDigest: bytes) -> TokenRights | None:
        """
        The rights of the token whose L{digest} is C{tokenDigest}, or
        C{None} if the file does not name it.  Every entry is compared, in
        constant time, whichever matches.
        """
        found = None
        for entryDigest, rights in self._entries:
            if hmac.compare_digest(entryDigest, tokenDigest):
                found = rights
        return found


def parseAccess(data: bytes, path: str) -> tuple[list[tuple[bytes, TokenRights]], bool]:
    """
    The entries of an access file whose content is C{data}: each token's
    digest and rights, in the file's order; and whether any token is
    written as it is.

    @param path: the file, as error messages name it.
    @raise AccessFileError: for the first line that is wrong, or a file
        that names no token.
    """
    entries: list[tuple[bytes, TokenRights]] = []
    lines: dict[bytes, int] = {}
    raw = False
    for number, line in enumerate(data.splitlines(), 1):
        words = _uncommented(line.split())
        if not words:
            continue
        try:
            tokenDigest, isRaw = _token(words[0])
            rights = _rights(words[1:])
        except ValueError as e:
            raise AccessFileError(f"access file {path}, line {number}: {e}") from None
        if tokenDigest in lines:
            raise AccessFileError(
                f"access file {path}, line {number}: the same token as line {lines[tokenDigest]}"
            )
        lines[tokenDigest] = number
        raw = raw or isRaw
        entries.append((tokenDigest, rights))
    if not entries:
        raise AccessFileError(f"access file {path} names no token")
    return entries, raw


def _uncommented(words: list[bytes]) -> list[bytes]:
    for index, word in enumerate(words):
        if word.startswith(b"#"):
            return words[:index]
    return words


def _token(word: bytes) -> tuple[bytes, bool]:
    """
    The digest of the token C{word} writes, and whether it is written as it
    is.
    """
    if word.startswith(tuple(key.encode() + b"=" for key in _KEYS)):
        raise ValueError("a line starts with its token, then read= and publish=")
    if not word.startswith(DIGEST_PREFIX):
        return digest(word), True
    hexDigest = word[len(DIGEST_PREFIX) :]
    if len(hexDigest) != 64 or not all(c in b"0123456789abcdefABCDEF" for c in hexDigest):
        raise ValueError("sha256: takes the 64 hex digits of the token's SHA-256")
    return bytes.fromhex(hexDigest.decode()), False


def _rights(words: list[bytes]) -> TokenRights:
    granted: dict[str, list[str]] = {key: [] for key in _KEYS}
    for word in words:
        key, equals, value = word.partition(b"=")
        if not equals or key.decode("ascii", "replace") not in granted:
            raise ValueError("after the token come only read=PATTERNS and publish=PATTERNS")
        for pattern in value.split(b","):
            granted[key.decode()].append(_pattern(key.decode(), pattern))
    if not any(granted.values()):
        raise ValueError("the token may do nothing: give read=PATTERNS, publish=PATTERNS or both")
    return TokenRights(granted["read"], granted["publish"])


def _pattern(key: str, pattern: bytes) -> str:
    if not pattern:
        raise ValueError(f"{key}= has an empty pattern (patterns are separated by commas, no spaces)")
    try:
        return checkPattern(pattern.decode("ascii"))
    except UnicodeDecodeError:
        raise ValueError(f"{key}= has a pattern that is not ASCII") from None
    except BadName as e:
        raise ValueError(f"{key}=: {e}") from None
