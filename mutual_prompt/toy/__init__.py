"""Entry point only: ``python -m mutual_prompt.toy.pretrain``; the toy world is ``mutual_prompt.tools.toy``."""
