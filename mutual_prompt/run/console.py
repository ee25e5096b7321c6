"""What a run prints where: its details (arguments, config, environment, transforms, prompts) always
go to log.txt, and to the terminal only with ``train.py --verbose``; progress and results go to both.

Both hosts' loggers replace ``sys.stdout`` with a tee whose ``file`` is the log, so writing to that
file alone keeps a line out of the terminal. Under a host's own train.py (CoOp, MaPLe) nothing calls
``set_verbose``: details then reach the log only, beside the host's own printout.
"""
import sys
from typing import Optional, TextIO

_verbose = False


def set_verbose(verbose: bool) -> None:
    global _verbose
    _verbose = verbose


def is_verbose() -> bool:
    return _verbose


def log_file() -> Optional[TextIO]:
    """The log file the current ``sys.stdout`` tees into, or None."""
    return getattr(sys.stdout, "file", None)


def log_only(text: str) -> None:
    """Write ``text`` (one or more lines) to the log file only; nothing without one."""
    file = log_file()
    if file is not None:
        file.write(text + "\n")
        file.flush()


def detail(text: str) -> None:
    """Print ``text`` with --verbose; else write it to the log file only."""
    if _verbose:
        print(text)
    else:
        log_only(text)
