"""How a run interrupted during its start-up ends: one line, exit status 128 + the signal's number.

train.py installs ``exit_on_interrupt`` for SIGINT and SIGTERM before it imports torch, the datasets
and the trainers, which takes seconds: a Ctrl-C then ends like one while the config is read, not with
a traceback from inside an import. Only the standard library is imported here, so the handlers are in
place before any slow import.
"""
import signal
import sys
from types import FrameType
from typing import Optional

INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


def start_up_interruption_line(signame: str) -> str:
    return (f"Interrupted by {signame} during start-up, before the trainer was built: run the same command again "
            "to start the run")


def exit_on_interrupt(signum: int, frame: Optional[FrameType]) -> None:
    """Signal handler: the start-up line on stdout, then exit with 128 + the signal's number."""
    print(start_up_interruption_line(signal.Signals(signum).name), flush=True)
    sys.exit(128 + signum)


def exit_on_interrupts() -> None:
    """SIGINT and SIGTERM end the process with ``exit_on_interrupt`` from now on."""
    for sig in INTERRUPTS:
        signal.signal(sig, exit_on_interrupt)


def default_interrupt_handlers() -> None:
    """Python's own handling of SIGINT (KeyboardInterrupt) and SIGTERM (the process ends) from now on."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
