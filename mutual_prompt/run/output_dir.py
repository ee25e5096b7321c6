"""One run per output directory: a lock file, and clean-up of what killed runs left behind.

``run.lock`` in the output directory holds the owner's pid, host and start time and is held with
``flock`` for the life of the process, so the kernel releases it when the run ends in any way
(exit, crash, SIGKILL). A lock file that nobody holds is stale: it is taken over, with a note. A
second run into a directory whose lock is held stops at once and names the running owner.
"""
import datetime
import fcntl
import json
import os
import re
import socket
import sys
from typing import List, Optional

LOCK_FILE = "run.lock"
# atomic_path's temporary files: ".<name>.<8 random characters>.tmp" beside the file they replace.
ATOMIC_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class OutputDirLocked(RuntimeError):
    """Another live process holds the output directory's lock."""


class OutputDirLock:
    """The held lock on one output directory; ``release()`` (or process exit) frees it."""

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd: Optional[int] = fd

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None


def owner_record() -> dict:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
    }


def owner_is_alive(record: dict) -> bool:
    """Whether the process a record names may still run: on another host it cannot be told, so yes."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 65536).decode("utf-8", errors="replace")
    try:
        record = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return record if isinstance(record, dict) else {}


def lock_output_dir(output_dir: str) -> OutputDirLock:
    """Take ``<output_dir>/run.lock`` or raise ``OutputDirLocked`` naming the run that holds it."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _read_record(fd)
            os.close(fd)
            raise OutputDirLocked(
                f"Output directory {output_dir} is in use by another run (pid {owner.get('pid', '?')} on host "
                f"{owner.get('host', '?')}, started {owner.get('started', '?')}: {owner.get('command', '?')}). "
                "Wait for it to finish or use another --output-dir; "
                f"if that run is known to be gone (e.g. on another machine sharing this disk), delete {path}."
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            break
        os.close(fd)  # the previous owner removed the file between our open and flock: try again
    previous = _read_record(fd)
    if previous:
        print(f"Taking over the stale lock {path} of a run that ended without releasing it "
              f"(pid {previous.get('pid', '?')} on host {previous.get('host', '?')}, started "
              f"{previous.get('started', '?')})")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(owner_record()).encode("utf-8"))
    os.fsync(fd)
    return OutputDirLock(path, fd)


def remove_stale_temp_files(output_dir: str) -> List[str]:
    """Delete the temporary files of interrupted atomic writes in ``output_dir`` and its model folders.

    Call only while holding the directory's lock: no other run can be writing there.
    """
    removed = []
    if not os.path.isdir(output_dir):
        return removed
    folders = [output_dir] + [
        os.path.join(output_dir, name) for name in sorted(os.listdir(output_dir))
        if os.path.isdir(os.path.join(output_dir, name))
    ]
    for folder in folders:
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if ATOMIC_TEMP.match(name) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed
