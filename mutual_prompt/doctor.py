"""``python -m mutual_prompt.doctor``: runs ``mutual_prompt.tools.doctor`` (docs/DATASETS.md)."""
import sys

from mutual_prompt.tools.exit_status import exit_status_of
from mutual_prompt.tools.doctor import main

if __name__ == "__main__":
    sys.exit(exit_status_of(main))
