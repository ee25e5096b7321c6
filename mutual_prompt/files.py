"""Atomic file writes, JSON reading and writing, exclusive lock files, and folder listing (used under
both hosts).

The names and signatures of ``mkdir_if_missing``, ``read_json``, ``write_json`` and
``listdir_nohidden`` are Dassl's (``dassl.utils``), so code written against either reads the same.
"""
import datetime
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple


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

    A crash while writing leaves the previous file intact instead of a truncated one. The temporary
    file is synced to disk before it is published and the folder after it, so that a power cut cannot
    leave an empty ``fpath`` behind a rename that reached the disk before the data did. With
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
        _fsync_file(tmp)
        if overwrite:
            os.replace(tmp, fpath)
        else:
            os.link(tmp, fpath)
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


class LockHeld(RuntimeError):
    """Another process holds the lock file ``path``; ``owner`` is the record it wrote ({} if none)."""

    def __init__(self, path: str, owner: Dict[str, Any]) -> None:
        super().__init__(f"{path} is held by {_holder(owner)}")
        self.path, self.owner = path, owner


class FileLock:
    """A held exclusive ``flock`` on a lock file. ``release()``, leaving a ``with`` block, or the end of
    every process that holds the descriptor (``fd``, which a child may inherit) frees it."""

    def __init__(self, path: str, fd: int, has_owner: bool) -> None:
        self.path, self.fd = path, fd
        self._has_owner = has_owner
        self._held = True

    def release(self) -> None:
        """Free the lock (a second call does nothing); an owner record written into the file is erased."""
        if not self._held:
            return
        self._held = False
        try:
            if self._has_owner:
                os.ftruncate(self.fd, 0)
        finally:
            os.close(self.fd)  # closing the last descriptor of the lock releases the flock

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()


def owner_record() -> Dict[str, Any]:
    """Who this process is, for a lock's owner record: pid, host, start time and command line."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def describe_owner(owner: Dict[str, Any]) -> str:
    """"pid P on host H, started T: COMMAND" ("?" for what the record lacks)."""
    return (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started {owner.get('started', '?')}: "
            f"{owner.get('command', '?')}")


def _holder(owner: Dict[str, Any]) -> str:
    return describe_owner(owner) if owner else "another process"


def exclusive_lock(lock_path: str, wait: bool = True, owner: Optional[Dict[str, Any]] = None) -> FileLock:
    """Take an exclusive ``flock`` on ``lock_path``; use the returned lock in a ``with`` block or ``release()`` it.

    While another process holds it, ``wait=True`` prints one line naming the lock file (and its holder,
    if the holder wrote an owner record) and waits; ``wait=False`` raises ``LockHeld`` at once. With
    ``owner`` (see ``owner_record``) the record is written into the lock file for as long as the lock is
    held, so that a refused or waiting process can name the holder. The kernel releases the lock when
    its holder exits in any way (SIGKILL included), so a lock file that nobody holds is simply free,
    whatever it contains. The file is created if missing (with its folder) and never removed: removing
    it would let a process that opened the old file and one that creates a new file both hold "the" lock.
    """
    mkdir_if_missing(os.path.dirname(os.path.abspath(lock_path)))
    # Without an owner record the file is only locked, never written: any user who can read it may lock.
    flags, mode = (os.O_RDWR, 0o644) if owner is not None else (os.O_RDONLY, 0o666)
    fd = os.open(lock_path, flags | os.O_CREAT, mode)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_owner(fd)
            if not wait:
                raise LockHeld(lock_path, holder) from None
            print(f"Waiting for {lock_path}, held by {_holder(holder)}", flush=True)
            fcntl.flock(fd, fcntl.LOCK_EX)
        if owner is not None:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner).encode("utf-8"), 0)
    except BaseException:
        os.close(fd)
        raise
    return FileLock(lock_path, fd, owner is not None)


def is_lock_held(lock_path: str) -> bool:
    """Whether a process holds the lock file ``lock_path`` now (a missing file is not held)."""
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _read_owner(fd: int) -> Dict[str, Any]:
    """The owner record in a lock file ({} if it holds none, e.g. its holder has not written it yet)."""
    text = os.pread(fd, 65536, 0).decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


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
