"""
Tests for the access file (L{streamd.access}): its format and mistakes,
the rights it grants, how it combines with the token files, its reload, and
its options.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from streamd.access import AccessFile, AccessFileError, TokenRights, parseAccess
from streamd.auth import ALL_STREAMS, NO_STREAMS, Access, AccessPolicy, TokenFile, digest
from streamd.config import DaemonConfig, ServerConfig
from streamd.service import StreamdService
from streamd.tap import Options

READER = b"reader-5b1e0c"
WRITER = b"writer-77d2aa"
HIDDEN = b"hidden-c0ffee"
GOOD = b"""\
# the desks
reader-5b1e0c read=prices.>,news.*   # the web desk
writer-77d2aa read=news.* publish=prices.eu.>,prices.us

sha256:%s read=>
""" % hashlib.sha256(HIDDEN).hexdigest().encode()


def writeFile(case: SynchronousTestCase, content: bytes, mode: int = 0o600) -> str:
    """
    A file holding C{content}, removed when C{case} ends.
    """
    descriptor, path = tempfile.mkstemp(prefix="streamd-access-")
    case.addCleanup(os.remove, path)
    with os.fdopen(descriptor, "wb") as f:
        f.write(content)
    os.chmod(path, mode)
    return path


def rewrite(path: str, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)


class ParseTests(SynchronousTestCase):
    """
    The access file's format: one line a token, then C{read=} and
    C{publish=}; each mistake one line naming the file and the line.
    """

    def test_good(self) -> None:
        """
        Comments, blank lines, tokens as they are and as C{sha256:} digests,
        C{read=} and C{publish=} lists: each token's digest and its
        patterns, in the file's order.
        """
        entries, raw = parseAccess(GOOD, "access")
        self.assertEqual(
            [entryDigest for entryDigest, _ in entries], [digest(READER), digest(WRITER), digest(HIDDEN)]
        )
        self.assertEqual(
            [(rights.read, rights.publish) for _, rights in entries],
            [
                (("prices.>", "news.*"), ()),
                (("news.*",), ("prices.eu.>", "prices.us")),
                ((">",), ()),
            ],
        )
        self.assertTrue(raw)

    def test_digestsOnly(self) -> None:
        """
        A file whose tokens are all C{sha256:} digests holds no token as it
        is; line endings may be CRLF, and a key may come twice.
        """
        line = b"sha256:%s read=a publish=b read=c\r\n" % hashlib.sha256(HIDDEN).hexdigest().upper().encode()
        entries, raw = parseAccess(line, "access")
        self.assertFalse(raw)
        self.assertEqual(entries[0][0], digest(HIDDEN))
        self.assertEqual((entries[0][1].read, entries[0][1].publish), (("a", "c"), ("b",)))

    def test_mistakes(self) -> None:
        """
        Each mistake is one line naming the file and the line, saying what
        is wrong, and never showing a token.
        """
        cases = [
            (b"# nothing but this\n\n", "access file F names no token"),
            (b"\n\nsecret-1", "access file F, line 3: the token may do nothing"),
            (b"secret-1 read=a\nsecret-1 publish=b", "line 2: the same token as line 1"),
            (
                b"secret-1 read=a\nsha256:%s read=b" % hashlib.sha256(b"secret-1").hexdigest().encode(),
                "line 2: the same token as line 1",
            ),
            (b"read=prices secret-1", "line 1: a line starts with its token"),
            (
                b"secret-1 read=prices secret-2",
                "line 1: after the token come only read=PATTERNS and publish=PATTERNS",
            ),
            (b"secret-1 subscribe=prices", "line 1: after the token come only read="),
            (b"secret-1 read=prices,", "line 1: read= has an empty pattern"),
            (b"secret-1 read=prices, news", "line 1: read= has an empty pattern"),
            (
                b"secret-1 publish=prices..eu",
                "line 1: publish=: 'prices..eu' is not a stream name or pattern",
            ),
            (b"secret-1 read=>.x", "line 1: read=: '>.x' is not a stream name or pattern"),
            (b"secret-1 read=pr\xc3\xa9", "line 1: read= has a pattern that is not ASCII"),
            (b"sha256:abc read=a", "line 1: sha256: takes the 64 hex digits"),
            (b"sha256:%s read=a" % (b"g" * 64), "line 1: sha256: takes the 64 hex digits"),
        ]
        for content, message in cases:
            error = self.assertRaises(AccessFileError, parseAccess, content, "F")
            self.assertIn(message, str(error))
            self.assertNotIn("secret-", str(error))
            self.assertEqual(len(str(error).splitlines()), 1)

    def test_unreadable(self) -> None:
        """
        A file that cannot be read is one line naming it.
        """
        error = self.assertRaises(AccessFileError, AccessFile, "/nonexistent/access")
        self.assertEqual(str(error), "cannot read access file /nonexistent/access: No such file or directory")


class RightsTests(SynchronousTestCase):
    """
    What a token of the access file may read and publish to.
    """

    def test_patterns(self) -> None:
        """
        Names match themselves, C{*} one token, C{>} one or more; a stream
        a token may publish to it may read.
        """
        rights = TokenRights(["prices.>", "news.*", "weather"], ["desks.web.>"])
        for name in ("prices.eu", "prices.eu.bund", "news.sport", "weather", "desks.web.out"):
            self.assertTrue(rights.reads(name), name)
        for name in ("prices", "news", "news.sport.live", "weather.eu", "default", "desks.web"):
            self.assertFalse(rights.reads(name), name)
        self.assertTrue(rights.publishes("desks.web.out"))
        for name in ("prices.eu", "weather", "desks.web"):
            self.assertFalse(rights.publishes(name), name)

    def test_everything(self) -> None:
        """
        C{read=>} reads every stream, C{default} included.
        """
        rights = TokenRights([">"], [])
        self.assertTrue(all(rights.reads(name) for name in ("default", "a.b.c", "x")))
        self.assertFalse(rights.publishes("default"))

    def test_constantTime(self) -> None:
        """
        Every entry is compared, whichever matches: the first, the last or
        none.
        """
        accessFile = AccessFile(writeFile(self, GOOD))
        compared: list[bytes] = []
        self.patch(hmac, "compare_digest", lambda a, b: compared.append(a) or a == b)
        for token in (READER, HIDDEN, b"nobody"):
            del compared[:]
            accessFile.rightsFor(digest(token))
            self.assertEqual(len(compared), 3)


class PolicyTests(SynchronousTestCase):
    """
    L{AccessPolicy} with an access file, alone and with the token files and
    C{--read-only}.
    """

    def policy(self, **files: bytes) -> AccessPolicy:
        tokenFiles = {
            name: TokenFile(writeFile(self, files.pop(name))) for name in ("auth", "publish") if name in files
        }
        readOnly = bool(files.pop("readOnly", b""))
        return AccessPolicy(**tokenFiles, readOnly=readOnly, accessFile=AccessFile(writeFile(self, GOOD)))  # type: ignore[arg-type]

    def test_alone(self) -> None:
        """
        Every client must send a token; a token of the file may read, or
        publish if it names streams to publish to; any other is refused.
        """
        policy = self.policy()
        self.assertTrue(policy.expectsToken)
        self.assertTrue(policy.perStream)
        self.assertIs(policy.initialAccess(), Access.NONE)
        self.assertIs(policy.initialRights(), NO_STREAMS)
        self.assertEqual(
            [policy.accessFor(token) for token in (READER, WRITER, HIDDEN, b"guess")],
            [Access.READ, Access.PUBLISH, Access.READ, Access.NONE],
        )
        self.assertTrue(policy.rightsForDigest(digest(READER)).reads("prices.eu"))
        self.assertFalse(policy.rightsForDigest(digest(READER)).reads("default"))
        self.assertTrue(policy.rightsForDigest(digest(WRITER)).publishes("prices.us"))
        self.assertIs(policy.rightsForDigest(digest(b"guess")), NO_STREAMS)

    def test_withTokenFiles(self) -> None:
        """
        The token files keep granting every stream: the C{--auth-token-file}
        token reads all (and publishes to what the access file grants that
        same token), the C{--publish-token-file} token reads and publishes
        to all.
        """
        policy = self.policy(auth=WRITER, publish=b"publisher-all")
        self.assertIs(policy.accessFor(WRITER), Access.PUBLISH)
        writer = policy.rightsForDigest(digest(WRITER))
        self.assertTrue(writer.reads("default") and writer.reads("anything.at.all"))
        self.assertTrue(writer.publishes("prices.eu.bund"))
        self.assertFalse(writer.publishes("default"))
        self.assertIs(policy.accessFor(b"publisher-all"), Access.PUBLISH)
        self.assertIs(policy.rightsForDigest(digest(b"publisher-all")), ALL_STREAMS)
        self.assertIs(policy.accessFor(READER), Access.READ)

    def test_authTokenAlone(self) -> None:
        """
        Without C{--publish-token-file}, the C{--auth-token-file} token
        reads and publishes to every stream, as without an access file.
        """
        policy = self.policy(auth=b"everything")
        self.assertIs(policy.accessFor(b"everything"), Access.PUBLISH)
        self.assertIs(policy.rightsForDigest(digest(b"everything")), ALL_STREAMS)

    def test_readOnly(self) -> None:
        """
        C{--read-only} wins over C{publish=}: no token may publish.
        """
        policy = self.policy(readOnly=b"yes")
        self.assertIs(policy.accessFor(WRITER), Access.READ)
        self.assertIs(policy.accessFor(READER), Access.READ)

    def test_withoutAccessFile(self) -> None:
        """
        Without an access file, every token's rights are every stream.
        """
        policy = AccessPolicy(auth=TokenFile(writeFile(self, READER)))
        self.assertFalse(policy.perStream)
        self.assertIs(policy.initialRights(), ALL_STREAMS)
        self.assertIs(policy.rightsForDigest(digest(READER)), ALL_STREAMS)
        self.assertIs(policy.rightsForDigest(digest(b"guess")), ALL_STREAMS)


class ReloadTests(SynchronousTestCase):
    """
    SIGHUP re-reads the access file with the token files; a file that fails
    keeps its old rules, and says so in one line.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)  # type: ignore[arg-type]
        self.accessPath = writeFile(self, GOOD)
        self.authPath = writeFile(self, b"auth-token-1")
        self.policy = AccessPolicy(auth=TokenFile(self.authPath), accessFile=AccessFile(self.accessPath))

    def lines(self, level: LogLevel = LogLevel.info, since: int = 0) -> list[str]:
        events = [self.events[index] for index in range(since, len(self.events))]
        return [formatEvent(event) for event in events if event["log_level"] >= level]

    def test_reloaded(self) -> None:
        """
        A changed file's rules are in force once reloaded.
        """
        rewrite(self.accessPath, b"reader-5b1e0c read=news.*\nnewcomer-1 publish=prices.eu\n")
        self.assertEqual(self.policy.reload(), ([self.authPath, self.accessPath], []))
        self.assertFalse(self.policy.rightsForDigest(digest(READER)).reads("prices.eu"))
        self.assertIs(self.policy.accessFor(WRITER), Access.NONE)
        self.assertIs(self.policy.accessFor(b"newcomer-1"), Access.PUBLISH)

    def test_brokenKeepsRules(self) -> None:
        """
        A file that no longer parses keeps the rules it had; the token file
        beside it is reloaded all the same.
        """
        rewrite(self.accessPath, b"writer-77d2aa read=prices\nreader-5b1e0c bogus\n")
        rewrite(self.authPath, b"auth-token-2")
        reloaded, failures = self.policy.reload()
        self.assertEqual(reloaded, [self.authPath])
        self.assertEqual(
            [str(e) for e in failures],
            [
                f"access file {self.accessPath}, line 2: after the token come only read=PATTERNS and publish=PATTERNS"
            ],
        )
        self.assertTrue(self.policy.rightsForDigest(digest(READER)).reads("prices.eu"))
        self.assertIs(self.policy.accessFor(WRITER), Access.PUBLISH)
        self.assertIs(self.policy.accessFor(b"auth-token-2"), Access.PUBLISH)

    def service(self) -> StreamdService:
        server = ServerConfig(access=self.policy)
        return StreamdService(None, DaemonConfig(listens=(), sources=(), server=server))

    def test_serviceLogsOneLine(self) -> None:
        """
        The daemon's reload (what SIGHUP runs) says in one error line which
        file failed and why, names the files it did reload, and shows no
        token.
        """
        rewrite(self.accessPath, b"\n" + READER + b" read=prices..eu\n")
        self.service().reloadTokens()
        self.assertEqual(
            self.lines(LogLevel.error),
            [
                f"reload failed, keeping the file's old tokens and rules: access file {self.accessPath}, "
                "line 2: read=: 'prices..eu' is not a stream name or pattern: tokens of letters, digits, _ and -,"
                " or * for one token, or > last for the rest"
            ],
        )
        self.assertIn(f"reloaded token file(s): {self.authPath}", self.lines())
        logged = "\n".join(self.lines())
        for token in (READER, WRITER, b"auth-token-1"):
            self.assertNotIn(token.decode(), logged)

    def test_exposedWarning(self) -> None:
        """
        At start, an access file that holds tokens as they are and that
        every user may read is named in a warning; one of digests only, or
        readable by its owner and group only, is not.
        """
        os.chmod(self.accessPath, 0o644)
        self.service().checkTokenFilesReadable()
        warning = f"access file {self.accessPath} holds tokens and every user may read it"
        self.assertEqual(len([line for line in self.lines(LogLevel.warn) if warning in line]), 1)
        os.chmod(self.accessPath, 0o640)
        since = len(self.events)
        self.service().checkTokenFilesReadable()
        rewrite(self.accessPath, b"sha256:%s read=>\n" % hashlib.sha256(HIDDEN).hexdigest().encode())
        os.chmod(self.accessPath, 0o644)
        self.policy.reload()
        self.service().checkTokenFilesReadable()
        self.assertEqual(self.lines(LogLevel.warn, since), [])


class OptionsTests(SynchronousTestCase):
    """
    C{--access-file} on the command line.
    """

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options

    def test_accessFile(self) -> None:
        """
        C{--access-file} makes the policy per stream, with the token files
        beside it, and C{--auth-timeout} applies to it.
        """
        path = writeFile(self, GOOD)
        options = self.parse(
            "--access-file", path, "--publish-token-file", writeFile(self, b"p"), "--auth-timeout", "2"
        )
        server = options["config"].server
        self.assertTrue(server.access.perStream)
        self.assertEqual(server.access.tokenFiles[-1].path, path)
        self.assertEqual(server.authTimeout, 2.0)

    def test_mistakes(self) -> None:
        """
        A mistake in the access file is one usage line.
        """
        bad = writeFile(self, b"secret-3 read=ok\nsecret-4 write=x\n")
        cases = [
            (["--access-file", bad], f"access file {bad}, line 2: after the token come only"),
            (["--access-file", "/nonexistent/access"], "cannot read access file /nonexistent/access"),
            (["--auth-timeout", "3"], "--auth-timeout needs --auth-token-file or --access-file"),
        ]
        for argv, message in cases:
            error = self.assertRaises(UsageError, Options().parseOptions, argv)
            self.assertIn(message, str(error))
            self.assertNotIn("secret-", str(error))
