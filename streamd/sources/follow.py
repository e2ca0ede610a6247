"""
The C{file} source: follow a file by name, like C{tail -F}.

It starts at the end of the file and publishes each line added after that.
Every L{FileSource.pollInterval} seconds it reads what was added and looks at
the path again:

  - another file now has the name (rotation: rename, then create): the old file
    is read to its end, an unfinished last line of it is published, and the new
    file is followed from its start;
  - the name is gone (between the rename and the create): the old file is still
    read, and the source waits for a new one;
  - the file is shorter than what was read (truncation, C{copytruncate}): it is
    read again from its start, and an unfinished line is dropped;
  - the file does not exist yet: the source waits, and follows it from its
    start when it appears.

Polling costs one C{stat} per interval, works on every filesystem, and makes
the source testable with a fake clock.  Like C{tail -F}, it cannot see a file
truncated and refilled past the old size within one interval, and lines
written to the old file after the new one appears are not read.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from streamd.sources.base import SourceContext
from streamd.sources.lines import LineSource


class FileSource(LineSource):
    """
    Follows the file at path C{argument}.
    """

    log = Logger()
    pollInterval = 0.25
    readSize = 64 * 1024
    # Read at most this much per poll, so a huge append cannot hold the
    # reactor; the rest is read at the next polls.
    maxReadPerPoll = 16 * 1024 * 1024

    def __init__(self, context: SourceContext, argument: str) -> None:
        super().__init__(context, argument)
        self.path = argument
        self._fd: int | None = None
        self._identity: tuple[int, int] | None = None
        self._position = 0
        self._paused = False
        self._problem: str | None = None
        self._lines = self.lineSplitter("file")
        self._loop = LoopingCall(self._poll)
        self._loop.clock = context.reactor
        dataDir = context.dataDir
        self._place = None if dataDir is None else dataDir.sourcePlace(context.hub.name, self.path)

    @classmethod
    def parseArgument(cls, argument: str) -> str:
        if not argument:
            raise ValueError("give a path, as in file:/var/log/syslog")
        return os.path.abspath(argument)

    def startService(self) -> None:
        super().startService()
        place = None if self._place is None else self._place.load()
        if place is None or not self._open(fromStart=False, resumeAt=place):
            self._open(fromStart=False)
        self._loop.start(self.pollInterval, now=False)

    def stopService(self) -> Any:
        if self._loop.running:
            self._loop.stop()
        self._close()
        return super().stopService()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False

    def _note(self, problem: str) -> None:
        """
        Log why the file cannot be read, once until the reason changes.
        """
        if problem != self._problem:
            self._problem = problem
            self.log.warn("{source}: {problem}", source=self.spec, problem=problem)

    def _open(self, fromStart: bool, resumeAt: tuple[int, int, int] | None = None) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except FileNotFoundError:
            self._note(f"{self.path} does not exist; waiting for it")
            return False
        except OSError as e:
            self._note(f"cannot open {self.path}: {e.strerror}; trying again")
            return False
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            self._note(f"{self.path} is not a regular file; waiting for one")
            return False
        if resumeAt is not None and (resumeAt[:2] != (info.st_dev, info.st_ino) or info.st_size < resumeAt[2]):
            os.close(fd)
            self.log.info(
                "{source}: {path} is not the file it followed before the restart, or is shorter: following"
                " it from its start",
                source=self.spec,
                path=self.path,
            )
            return self._open(fromStart=True)
        self._fd = fd
        self._identity = (info.st_dev, info.st_ino)
        self._lines.reset()
        if resumeAt is not None:
            self._position = os.lseek(fd, resumeAt[2], os.SEEK_SET)
        elif fromStart:
            self._position = 0
        else:
            self._position = os.lseek(fd, 0, os.SEEK_END)
            if self._position and os.pread(fd, 1, self._position - 1) != b"\n":
                self._lines.skipToNextLine()
        self._problem = None
        self.log.info(
            "{source}: following {path} from its {where}",
            source=self.spec,
            path=self.path,
            where=f"byte {self._position}, where it was" if resumeAt is not None else "start" if fromStart else "end",
        )
        return True

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._identity = None

    def _poll(self) -> None:
        if self._paused:
            return
        if self._fd is None:
            if not self._open(fromStart=True):
                return
        if not self._read():
            return
        try:
            info = os.stat(self.path)
        except FileNotFoundError:
            self._note(f"{self.path} was removed or renamed; waiting for a new one")
            return
        except OSError as e:
            self._note(f"cannot look at {self.path}: {e.strerror}; trying again")
            return
        if (info.st_dev, info.st_ino) != self._identity:
            self.publishLines(self._lines.finish())
            self._close()
            self.log.info("{source}: {path} was replaced", source=self.spec, path=self.path)
            if self._open(fromStart=True):
                self._read()
            return
        assert self._fd is not None
        if os.fstat(self._fd).st_size < self._position:
            self.log.info(
                "{source}: {path} was truncated; reading it from its start", source=self.spec, path=self.path
            )
            self._lines.reset()
            self._position = os.lseek(self._fd, 0, os.SEEK_SET)
            self._read()

    def _read(self) -> bool:
        """
        Read and publish what was added to the file.

        @return: whether the end of the file was reached.
        """
        assert self._fd is not None
        budget = self.maxReadPerPoll
        while budget > 0 and not self._paused:
            try:
                data = os.read(self._fd, min(self.readSize, budget))
            except OSError as e:
                self._note(f"cannot read {self.path}: {e.strerror}; trying again")
                return False
            if not data:
                return True
            self._position += len(data)
            budget -= len(data)
            self.publishLines(self._lines.feed(data))
            self._keepPlace()
        return False

    def _keepPlace(self) -> None:
        """
        Save the end of the last line published, in the data directory.
        """
        if self._place is not None and self._identity is not None:
            self._place.save(*self._identity, self._position - self._lines.pending)
