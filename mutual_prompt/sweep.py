"""``python -m mutual_prompt.sweep``: runs ``mutual_prompt.tools.sweep`` (docs/SWEEP.md)."""
import sys

from mutual_prompt.tools.exit_status import exit_status_of
from mutual_prompt.tools.sweep.cli import main

if __name__ == "__main__":
    sys.exit(exit_status_of(main))
