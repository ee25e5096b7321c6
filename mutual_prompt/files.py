"""Atomic file writes, JSON reading and writing, and folder listing (used under both hosts).

The names and signatures are Dassl's (``dassl.utils``), so code written against either reads the same.
"""
import errno
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, List


def mkdir_if_missing(dirname: str) -> None:
    if dirname and not os.path.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


@contextmanager
def atomic_path(fpath: str) -> Iterator[str]:
    """Yield a temporary path beside ``fpath``; it replaces ``fpath`` only if the block succeeds.

    A crash while writing leaves the previous file intact instead of a truncated one. The temporary
    file is synced to disk before the rename and the folder after it, so that a power cut cannot
    leave an empty ``fpath`` behind a rename that reached the disk before the data did.
    """
    directory = os.path.dirname(os.path.abspath(fpath))
    mkdir_if_missing(directory)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(fpath) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        _fsync_file(tmp)
        os.replace(tmp, fpath)
        _fsync_directory(directory)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _fsync_file(path: str) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable (POSIX; Windows cannot open a folder)."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(fpath: str) -> Any:
    try:
        with open(fpath, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{fpath} is not valid JSON: {e}") from e


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(fpath) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """Entries of ``path`` not starting with a dot; ``sort`` gives a machine-independent order."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items
