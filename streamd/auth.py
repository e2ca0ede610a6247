"""
Who may read and who may publish: token files, the access file, and the
access and the streams they grant.

When any token is configured, the first frame a client sends is its token.
Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import IntEnum
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from streamd._errors import ConfigError

if TYPE_CHECKING:
    from streamd.access import AccessFile


class Access(IntEnum):
    """
    What a client may do.
    """

    NONE = 0
    READ = 1
    PUBLISH = 2


class StreamRights:
    """
    The streams a client may read and publish to: all of them, unless an
    access file says otherwise for its token.
    """

    def reads(self, name: str) -> bool:
        """
        Whether the client may be sent the stream C{name}.
        """
        return True

    def publishes(self, name: str) -> bool:
        """
        Whether the client may publish to the stream C{name}.
        """
        return True


ALL_STREAMS = StreamRights()


class _NoStreams(StreamRights):
    def reads(self, name: str) -> bool:
        return False

    def publishes(self, name: str) -> bool:
        return False


NO_STREAMS = _NoStreams()
"""
The rights of a client that has presented no token, or one that no longer
grants anything.
"""


class ReadingAll(StreamRights):
    """
    Every stream to read (an C{--auth-token-file} token's rights), and to
    publish to those that C{publishing} allows.
    """

    def __init__(self, publishing: StreamRights = NO_STREAMS) -> None:
        self.publishing = publishing

    def reads(self, name: str) -> bool:
        return True

    def publishes(self, name: str) -> bool:
        return self.publishing.publishes(name)


class TokenFileError(ConfigError):
    """
    A token file is missing, unreadable or empty.
    """


def readToken(path: str, what: str = "token file") -> bytes:
    """
    The secret in the file at C{path}, surrounding whitespace stripped: the
    one way streamd reads a token or a password from a file.

    @param what: the file, as error messages name it (an option, say).
    @raise TokenFileError: if the file cannot be read or holds nothing.
    """
    try:
        with open(path, "rb") as f:
            token = f.read().strip()
    except OSError as e:
        raise TokenFileError(f"cannot read {what} {path}: {e.strerror}") from None
    if not token:
        raise TokenFileError(f"{what} {path} is empty")
    return token


class TokenFile:
    """
    A secret read from a file (surrounding whitespace stripped), re-read by
    L{load}.
    """

    what = "token file"

    def __init__(self, path: str) -> None:
        self.path = path
        self._digest = b""
        self.load()

    def load(self) -> None:
        """
        Read the token now.

        @raise TokenFileError: if the file cannot be read or holds no token;
            the previous token then stays in force.
        """
        self._digest = digest(readToken(self.path))

    def matches(self, candidate: bytes) -> bool:
        """
        Whether C{candidate} is the token, in time independent of both.
        """
        return self.matchesDigest(digest(candidate))

    def matchesDigest(self, candidate: bytes) -> bool:
        """
        Whether C{candidate} is the L{digest} of the token, in constant time.
        """
        return hmac.compare_digest(self._digest, candidate)


def digest(token: bytes) -> bytes:
    """
    What streamd keeps of a token a client presented: its SHA-256.
    Comparing fixed-size digests hides the token's length as well.
    """
    return hashlib.sha256(token).digest()


class AccessPolicy:
    """
    The daemon's access rules.

      - No token files: every client may publish (unless C{readOnly}).
      - C{auth}: a client must send this token first, within the auth timeout;
        it may then read, and publish too when there is no C{publish} token.
      - C{publish}: a client that sends this token first may publish; every
        other client is read-only.
      - C{accessFile}: every client must send a token first, either one of
        the file's, which grants the streams the file names, or a token
        file's, which grant every stream as above; a client that sent the
        C{auth} token may publish to the streams the file names for that
        token too (a token's rights are what each file grants it together).
      - C{readOnly}: no client may publish; only the daemon's sources do.

    @raise ConfigError: for C{readOnly} with a C{publish} token, which
        would contradict it.
    """

    def __init__(
        self,
        auth: TokenFile | None = None,
        publish: TokenFile | None = None,
        readOnly: bool = False,
        accessFile: AccessFile | None = None,
    ) -> None:
        if readOnly and publish is not None:
            raise ConfigError("--read-only and --publish-token-file cannot be combined")
        self.auth = auth
        self.publish = publish
        self.readOnly = readOnly
        self.accessFile = accessFile

    @property
    def tokenFiles(self) -> list[TokenFile | AccessFile]:
        """
        The files of tokens in force: the token files and the access file.
        """
        files = (self.auth, self.publish, self.accessFile)
        return [tokenFile for tokenFile in files if tokenFile is not None]

    @property
    def expectsToken(self) -> bool:
        """
        Whether a client's first frame is its token.
        """
        return bool(self.tokenFiles)

    @property
    def perStream(self) -> bool:
        """
        Whether some tokens may read or publish to only some streams (an
        access file); if not, every client's rights are L{ALL_STREAMS}.
        """
        return self.accessFile is not None

    def initialAccess(self) -> Access:
        """
        What a client may do before it has sent a token.
        """
        if self.auth is not None or self.accessFile is not None:
            return Access.NONE
        if self.readOnly or self.publish is not None:
            return Access.READ
        return Access.PUBLISH

    def initialRights(self) -> StreamRights:
        """
        The streams a client may use before it has sent a token.
        """
        return NO_STREAMS if self.perStream else ALL_STREAMS

    def rightsForDigest(self, tokenDigest: bytes) -> StreamRights:
        """
        The streams a client whose token's L{digest} is C{tokenDigest} may
        read and publish to (whether it may publish at all is
        L{accessForDigest}'s to say).
        """
        if self.accessFile is None:
            return ALL_STREAMS
        everywhere = self._tokenFileAccess(tokenDigest)
        if everywhere is Access.PUBLISH:
            return ALL_STREAMS
        named = self.accessFile.rightsFor(tokenDigest)
        if everywhere is Access.READ:
            return ReadingAll(NO_STREAMS if named is None else named)
        return NO_STREAMS if named is None else named

    def accessFor(self, token: bytes) -> Access:
        """
        What a client that sent C{token} may do; L{Access.NONE} for a token
        that is wrong.
        """
        return self.accessForDigest(digest(token))

    def accessForDigest(self, tokenDigest: bytes) -> Access:
        """
        L{accessFor} a token whose L{digest} is C{tokenDigest}.
        """
        granted = self._tokenFileAccess(tokenDigest)
        if self.accessFile is not None:
            named = self.accessFile.rightsFor(tokenDigest)
            if named is not None:
                granted = max(granted, Access.PUBLISH if named.publish else Access.READ)
        if self.readOnly:
            return min(granted, Access.READ)
        return granted

    def _tokenFileAccess(self, tokenDigest: bytes) -> Access:
        """
        What the token files grant the token whose digest is C{tokenDigest},
        on every stream.
        """
        publisher = self.publish is not None and self.publish.matchesDigest(tokenDigest)
        reader = self.auth is not None and self.auth.matchesDigest(tokenDigest)
        if publisher or (reader and self.publish is None):
            return Access.PUBLISH
        if reader:
            return Access.READ
        return Access.NONE

    def reload(self) -> tuple[list[str], list[TokenFileError]]:
        """
        Re-read every token file and the access file.

        @return: the files that were re-read, and why each of the others
            could not be: a file that fails keeps its old tokens and rules.
        """
        reloaded = []
        failures = []
        for tokenFile in self.tokenFiles:
            try:
                tokenFile.load()
            except TokenFileError as e:
                failures.append(e)
            else:
                reloaded.append(tokenFile.path)
        return reloaded, failures


OPEN = AccessPolicy()

_DEFAULT_PORTS = {"http": 80, "https": 443}


def originAllowed(origin: str | None, host: str | None, allowed: tuple[str, ...] = ()) -> bool:
    """
    Whether a web page of C{origin} (its C{Origin} header) may open the
    daemon's streams through a request for C{host} (its C{Host} header):
    a client that sends no C{Origin} is not a page; a page of the daemon's
    own origin may; other pages only when C{allowed} lists their origin
    (as C{https://example.com:8443}), or holds C{*}.
    """
    if origin is None or "*" in allowed:
        return True
    origin = origin.strip().lower().rstrip("/")
    if origin in {entry.strip().lower().rstrip("/") for entry in allowed}:
        return True
    if host is None:
        return False
    try:
        page = urlsplit(origin)
        served = urlsplit("//" + host.strip().lower())
        pagePort = page.port or _DEFAULT_PORTS.get(page.scheme)
        servedPort = served.port or _DEFAULT_PORTS.get(page.scheme)
    except ValueError:
        return False
    return page.hostname is not None and page.hostname == served.hostname and pagePort == servedPort
