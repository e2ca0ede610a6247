"""
Small files of the data directory that are replaced whole: written beside,
synced, then renamed over the old one, so that a crash leaves the old or
the new, never a mix.
"""

from __future__ import annotations

import os

EPOCH_SIZE = 8


def replaceFile(path: str, data: bytes) -> None:
    """
    Make C{path} hold C{data}, atomically and durably.
    """
    temporary = path + ".new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    syncDirectory(os.path.dirname(path) or ".")


def syncDirectory(path: str) -> None:
    """
    Make the names in directory C{path} durable (a new or renamed file).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def readEpoch(path: str) -> bytes:
    """
    The epoch stored at C{path}, or a new random one stored there.
    """
    try:
        with open(path, "rb") as f:
            epoch = f.read()
    except FileNotFoundError:
        epoch = b""
    if len(epoch) != EPOCH_SIZE:
        epoch = os.urandom(EPOCH_SIZE)
        replaceFile(path, epoch)
    return epoch
