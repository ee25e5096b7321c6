"""``python -m mutual_prompt.install_into``: runs ``mutual_prompt.tools.install_into`` (docs/DROP_IN.md)."""
import sys

from mutual_prompt.tools.install_into import main

if __name__ == "__main__":
    sys.exit(main())
