"""``python -m mutual_prompt.doctor``: runs ``mutual_prompt.tools.doctor`` (docs/DATASETS.md)."""
import sys

from mutual_prompt.tools.doctor import main

if __name__ == "__main__":
    sys.exit(main())
