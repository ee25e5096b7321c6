"""The exit status of a command-line tool whose output may be piped into a reader that stops early."""
import os
import signal
import sys
from typing import Callable, Optional


def exit_status_of(main: Callable[[], Optional[int]]) -> int:
    """``main()``'s exit status; when the reader of its output goes away (``... | head``), the status a
    shell tool killed by SIGPIPE gives (141), without a traceback."""
    try:
        status = main()
        sys.stdout.flush()
        return status or 0
    except BrokenPipeError:
        # Python flushes stdout once more at exit: point it at devnull so that this flush cannot fail too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + getattr(signal, "SIGPIPE", 13)
