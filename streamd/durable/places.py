"""
Where a C{file:} source is in the file it follows (device, inode, offset
of the end of the last line published), kept in the data directory so that
a restarted daemon goes on there rather than from the end of the file.
"""

from __future__ import annotations

import os
from struct import Struct

_PLACE = Struct(">QQQ")


class SourcePlace:
    """
    The place of one source, in the file at C{path}.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._saved: tuple[int, int, int] | None = None

    def load(self) -> tuple[int, int, int] | None:
        """
        The device, inode and offset last saved, if any.
        """
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return None
        if len(data) != _PLACE.size:
            return None
        self._saved = _PLACE.unpack(data)
        return self._saved

    def save(self, device: int, inode: int, offset: int) -> None:
        """
        Keep C{device}, C{inode} and C{offset} (renamed into place, not
        synced: the log it follows is synced as C{--fsync} says).
        """
        place = (device, inode, offset)
        if place == self._saved:
            return
        temporary = self.path + ".new"
        with open(temporary, "wb") as f:
            f.write(_PLACE.pack(*place))
        os.replace(temporary, self.path)
        self._saved = place
