"""
Tests for L{streamd.names}: what a stream name and a pattern are, and that
both tries find exactly what matching one by one finds.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from streamd.names import BadName, NameTrie, PatternTrie, checkName, checkPattern, isPattern, matches

_tokens = st.sampled_from(["a", "b", "prices", "eu", "x-1", "_"])
_names = st.lists(_tokens, min_size=1, max_size=4).map(".".join)
_patternTokens = st.sampled_from(["a", "b", "prices", "eu", "*"])
_patterns = st.builds(
    lambda tokens, rest: ".".join(tokens + ([">"] if rest else [])),
    st.lists(_patternTokens, min_size=1, max_size=3),
    st.booleans(),
)


class NameTests(SynchronousTestCase):
    """
    Names and patterns, and their one-line errors.
    """

    def test_names(self) -> None:
        """
        Dot-separated tokens of letters, digits, _ and - are names; an
        empty token, another character, a wildcard or more than 255 bytes
        is not.
        """
        for name in ("default", "prices.eu.bund", "a-b_c.9"):
            self.assertEqual(checkName(name), name)
        for bad in ("", "a..b", ".a", "a.", "a b", "a.*", "a.>", "é", "x" * 256):
            self.assertRaises(BadName, checkName, bad)

    def test_patterns(self) -> None:
        """
        A pattern's tokens may be * and, last, >; > elsewhere, or a token
        that mixes them with letters, is not a pattern.
        """
        for pattern in ("prices.*", "logs.>", "*", ">", "*.eu.>", "plain"):
            self.assertEqual(checkPattern(pattern), pattern)
        for bad in ("a.>.b", "a*", "a.b>", "", "a..*"):
            self.assertRaises(BadName, checkPattern, bad)
        self.assertEqual([isPattern(p) for p in ("prices.*", "logs.>", "*", "a.b", "x-y")], [1, 1, 1, 0, 0])

    def test_matching(self) -> None:
        """
        * matches one token, > one or more, NATS-style.
        """
        self.assertTrue(matches("prices.*", "prices.eu"))
        self.assertFalse(matches("prices.*", "prices.eu.bund"))
        self.assertFalse(matches("prices.*", "prices"))
        self.assertTrue(matches("logs.>", "logs.web.nginx"))
        self.assertFalse(matches("logs.>", "logs"))
        self.assertTrue(matches(">", "anything.at.all"))


class TrieTests(SynchronousTestCase):
    """
    The tries agree with L{matches}, after any adds and removes.
    """

    @given(st.lists(_patterns, max_size=8), st.lists(_names, max_size=8), st.data())
    def test_patternTrie(self, patterns: list[str], names: list[str], data: st.DataObject) -> None:
        """
        A name is matched by exactly the patterns still filed that match it.
        """
        trie: PatternTrie[int] = PatternTrie()
        for value, pattern in enumerate(patterns):
            trie.add(pattern, value)
        removed = data.draw(st.sets(st.integers(0, max(len(patterns) - 1, 0)), max_size=len(patterns)))
        for value in removed:
            if value < len(patterns):
                trie.remove(patterns[value], value)
        kept = {v: p for v, p in enumerate(patterns) if v not in removed}
        self.assertEqual(len(trie), len(kept))
        for name in names:
            self.assertEqual(sorted(trie.match(name)), sorted(v for v, p in kept.items() if matches(p, name)))

    @given(st.lists(_names, max_size=10), st.lists(_names, max_size=4), st.lists(_patterns, max_size=6))
    def test_nameTrie(self, names: list[str], gone: list[str], patterns: list[str]) -> None:
        """
        A pattern finds exactly the names still filed that it matches.
        """
        trie = NameTrie()
        for name in names:
            trie.add(name)
        for name in gone:
            trie.remove(name)
        kept = set(names) - set(gone)
        for pattern in patterns:
            self.assertEqual(sorted(trie.match(pattern)), sorted(n for n in kept if matches(pattern, n)))
