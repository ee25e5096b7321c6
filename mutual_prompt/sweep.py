"""``python -m mutual_prompt.sweep``: runs ``mutual_prompt.tools.sweep`` (docs/SWEEP.md)."""
import sys

from mutual_prompt.tools.sweep.cli import main

if __name__ == "__main__":
    sys.exit(main())
