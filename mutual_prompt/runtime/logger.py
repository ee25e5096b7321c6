"""Tee stdout to ``<output>/log.txt`` as Dassl does (an existing log is never overwritten).

The log file is line-buffered: every printed line reaches the file at once, so a run killed
without warning (SIGKILL, out of memory, a lost node) leaves every line it printed.
"""
import os
import sys
import time
from typing import Optional, TextIO

from ..files import mkdir_if_missing


class Tee:
    """Writes to the console stream and to a line-buffered log file."""

    def __init__(self, stream: TextIO, fpath: str) -> None:
        self.console = stream
        self.file = open(fpath, "a", encoding="utf-8", buffering=1)

    def write(self, msg: str) -> None:
        self.console.write(msg)
        self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        self.file.flush()
        os.fsync(self.file.fileno())

    def isatty(self) -> bool:
        return False

    def close(self) -> None:
        self.file.close()


def setup_logger(output: Optional[str] = None) -> None:
    """Log to ``output`` (a ``.txt``/``.log`` file or a folder holding ``log.txt``); only on rank 0."""
    if not output or int(os.environ.get("RANK", "0")) != 0:
        return
    fpath = output if output.endswith((".txt", ".log")) else os.path.join(output, "log.txt")
    if os.path.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    mkdir_if_missing(os.path.dirname(os.path.abspath(fpath)))
    console_out = sys.stdout.console if isinstance(sys.stdout, Tee) else sys.stdout
    sys.stdout = Tee(console_out, fpath)
