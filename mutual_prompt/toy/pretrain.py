"""``python -m mutual_prompt.toy.pretrain``: runs ``mutual_prompt.tools.toy.pretrain`` (docs/TOY_WORLD.md)."""
from mutual_prompt.tools.toy.pretrain import main

if __name__ == "__main__":
    main()
