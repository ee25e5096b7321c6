"""``python -m mutual_prompt.convert``: runs ``mutual_prompt.tools.convert`` (docs/USAGE.md)."""
from mutual_prompt.tools.convert import main

if __name__ == "__main__":
    main()
