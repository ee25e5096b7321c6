"""Atomic file writes, JSON reading and writing, an exclusive lock file, and folder listing (used under
both hosts).

The names and signatures of ``mkdir_if_missing``, ``read_json``, ``write_json`` and
``listdir_nohidden`` are Dassl's (``dassl.utils``), so code written against either reads the same.
"""
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, List, Tuple


def mkdir_if_missing(dirname: str) -> None:
    if dirname and not os.path.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


@contextmanager
def atomic_path(fpath: str, overwrite: bool = True) -> Iterator[str]:
    """Yield a temporary path beside ``fpath``; it becomes ``fpath`` only if the block succeeds.

    A crash while writing leaves the previous file intact instead of a truncated one. With
    ``overwrite=False`` the file is published with a hard link, which raises ``FileExistsError`` if
    ``fpath`` exists by then: an existing file is never replaced.
    """
    directory = os.path.dirname(os.path.abspath(fpath))
    mkdir_if_missing(directory)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(fpath) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        if overwrite:
            os.replace(tmp, fpath)
        else:
            os.link(tmp, fpath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def exclusive_lock(lock_path: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` for the block, waiting while another process holds it.

    The lock file is created if missing (with its folder) and left in place afterwards: removing it
    would let a process that opened the old file and one that creates a new file both hold "the"
    lock. The kernel releases the lock when the holder exits in any way, so a killed holder never
    blocks the next one. Waiting prints one line naming the lock file.
    """
    mkdir_if_missing(os.path.dirname(os.path.abspath(lock_path)))
    fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o666)  # read-only: any user who can read it may lock
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for {lock_path}, held by another process", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def read_json(fpath: str) -> Any:
    return read_json_and_sha256(fpath)[0]


def read_json_and_sha256(fpath: str) -> Tuple[Any, str]:
    """The JSON object in ``fpath`` and the sha256 (hex) of the very bytes it was parsed from."""
    with open(fpath, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8")), hashlib.sha256(raw).hexdigest()
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{fpath} is not valid JSON: {e}") from e


def write_json(obj: Any, fpath: str, overwrite: bool = True) -> None:
    """Write ``obj`` as indented JSON, atomically; ``overwrite=False``: see ``atomic_path``."""
    with atomic_path(fpath, overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """Entries of ``path`` not starting with a dot; ``sort`` gives a machine-independent order."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items
