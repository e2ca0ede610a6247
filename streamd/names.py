"""
Stream names and the patterns that match them, NATS-style.

A name is dot-separated tokens of C{[A-Za-z0-9_-]}, at most
L{MAX_NAME} bytes: C{prices.eu.bund}.  A pattern is a name whose tokens
may also be C{*} (any one token) and, last, C{>} (one or more tokens):
C{prices.*}, C{logs.>}.

Matching is done once, when a stream or a subscription appears, never per
message: L{PatternTrie} finds the patterns that match a new stream's name,
L{NameTrie} the streams a new pattern matches, each by walking only the
branches that can match.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Generic, TypeVar

MAX_NAME = 255
"""
The longest name or pattern, in bytes.
"""

DEFAULT = "default"
"""
The stream every daemon has, and the only one older clients know.
"""

_TOKEN = re.compile(r"[A-Za-z0-9_-]+")

T = TypeVar("T")


class BadName(ValueError):
    """
    Not a stream name (or pattern): its str says why, in one line.
    """


def _tokens(text: str, what: str) -> list[str]:
    if not text or len(text.encode()) > MAX_NAME:
        raise BadName(f"a {what} has 1 to {MAX_NAME} bytes, not {len(text.encode())}: {text!r}")
    return text.split(".")


def checkName(name: str) -> str:
    """
    C{name}, if it is a stream name.

    @raise BadName: if it is not.
    """
    for token in _tokens(name, "stream name"):
        if not _TOKEN.fullmatch(token):
            raise BadName(f"{name!r} is not a stream name: dot-separated tokens of letters, digits, _ and -")
    return name


def checkPattern(pattern: str) -> str:
    """
    C{pattern}, if it is a stream name or a pattern.

    @raise BadName: if it is neither.
    """
    tokens = _tokens(pattern, "pattern")
    for index, token in enumerate(tokens):
        if token == ">" and index == len(tokens) - 1:
            continue
        if token != "*" and not _TOKEN.fullmatch(token):
            raise BadName(
                f"{pattern!r} is not a stream name or pattern: tokens of letters, digits, _ and -,"
                " or * for one token, or > last for the rest"
            )
    return pattern


def isPattern(subject: str) -> bool:
    """
    Whether C{subject} (a checked name or pattern) has a wildcard.
    """
    return subject == "*" or subject == ">" or ".*" in subject or "*." in subject or subject.endswith(".>")


def matches(pattern: str, name: str) -> bool:
    """
    Whether C{pattern} matches the stream C{name} (one by one: for tests
    and for a single check; the tries below match many at once).
    """
    want = pattern.split(".")
    have = name.split(".")
    for index, token in enumerate(want):
        if token == ">":
            return len(have) > index
        if index >= len(have) or (token != "*" and token != have[index]):
            return False
    return len(want) == len(have)


class _PatternNode(Generic[T]):
    __slots__ = ("children", "here", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _PatternNode[T]] = {}
        self.here: dict[T, None] = {}
        self.rest: dict[T, None] = {}


class PatternTrie(Generic[T]):
    """
    Values (subscriptions) filed under patterns, found by the names they
    match.
    """

    def __init__(self) -> None:
        self._root: _PatternNode[T] = _PatternNode()
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, pattern: str, value: T) -> None:
        node = self._root
        tokens = pattern.split(".")
        for token in tokens[:-1]:
            node = node.children.setdefault(token, _PatternNode())
        last = tokens[-1]
        if last == ">":
            node.rest[value] = None
        else:
            node.children.setdefault(last, _PatternNode()).here[value] = None
        self._count += 1

    def remove(self, pattern: str, value: T) -> None:
        """
        Forget C{value} under C{pattern}; branches left empty go too.
        """
        path = [self._root]
        tokens = pattern.split(".")
        for token in tokens[:-1] if tokens[-1] == ">" else tokens:
            child = path[-1].children.get(token)
            if child is None:
                return
            path.append(child)
        values = path[-1].rest if tokens[-1] == ">" else path[-1].here
        if values.pop(value, 0) is None:
            self._count -= 1
        for parent, node, token in reversed(list(zip(path, path[1:], tokens, strict=False))):
            if node.children or node.here or node.rest:
                break
            del parent.children[token]

    def match(self, name: str) -> list[T]:
        """
        Every value whose pattern matches C{name}, each once.
        """
        found: dict[T, None] = {}
        self._walk(self._root, name.split("."), 0, found)
        return list(found)

    def _walk(self, node: _PatternNode[T], tokens: list[str], index: int, found: dict[T, None]) -> None:
        if index == len(tokens):
            found.update(node.here)
            return
        found.update(node.rest)
        for key in (tokens[index], "*"):
            child = node.children.get(key)
            if child is not None:
                self._walk(child, tokens, index + 1, found)


class _NameNode:
    __slots__ = ("children", "name")

    def __init__(self) -> None:
        self.children: dict[str, _NameNode] = {}
        self.name: str | None = None


class NameTrie:
    """
    Stream names, found by the patterns that match them.
    """

    def __init__(self) -> None:
        self._root = _NameNode()

    def add(self, name: str) -> None:
        node = self._root
        for token in name.split("."):
            node = node.children.setdefault(token, _NameNode())
        node.name = name

    def remove(self, name: str) -> None:
        path = [self._root]
        tokens = name.split(".")
        for token in tokens:
            child = path[-1].children.get(token)
            if child is None:
                return
            path.append(child)
        path[-1].name = None
        for parent, node, token in reversed(list(zip(path, path[1:], tokens, strict=False))):
            if node.children or node.name is not None:
                break
            del parent.children[token]

    def match(self, pattern: str) -> Iterator[str]:
        """
        Every name C{pattern} matches.
        """
        return self._walk(self._root, pattern.split("."), 0)

    def _walk(self, node: _NameNode, tokens: list[str], index: int) -> Iterator[str]:
        if index == len(tokens):
            if node.name is not None:
                yield node.name
            return
        token = tokens[index]
        if token == ">":
            for child in node.children.values():
                yield from _everyName(child)
        elif token == "*":
            for child in node.children.values():
                yield from self._walk(child, tokens, index + 1)
        elif token in node.children:
            yield from self._walk(node.children[token], tokens, index + 1)


def _everyName(node: _NameNode) -> Iterator[str]:
    if node.name is not None:
        yield node.name
    for child in node.children.values():
        yield from _everyName(child)
