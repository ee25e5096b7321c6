"""One run per output directory: a lock file, and clean-up of what killed runs left behind.

``run.lock`` in the output directory is held (``mutual_prompt.files.exclusive_lock``) for the life of
the process, with the owner's pid, host, start time and command written in it; the kernel releases
it when the run ends in any way (exit, crash, SIGKILL). A second run into a directory whose lock is
held stops at once and names the running owner.
"""
import os
import re
from typing import List

from mutual_prompt.files import FileLock, LockHeld, describe_owner, exclusive_lock, owner_record

LOCK_FILE = "run.lock"
# atomic_path's temporary files: ".<name>.<8 random characters>.tmp" beside the file they replace.
ATOMIC_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")


class OutputDirLocked(RuntimeError):
    """Another live process holds the output directory's lock."""


def lock_output_dir(output_dir: str) -> FileLock:
    """Take ``<output_dir>/run.lock`` or raise ``OutputDirLocked`` naming the run that holds it."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        return exclusive_lock(path, wait=False, owner=owner_record())
    except LockHeld as e:
        raise OutputDirLocked(
            f"Output directory {output_dir} is in use by another run ({describe_owner(e.owner)}). "
            "Wait for it to finish or use another --output-dir; "
            f"if that run is known to be gone (e.g. on another machine sharing this disk), delete {path}."
        ) from None


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
