"""MutualPromptCLIP's keyword arguments as the trainer builds them from the config's defaults."""
from mutual_prompt.backend import get_cfg_default
from trainers.mutual_prompt import extend_cfg, model_arguments


def arguments(**changes) -> dict:
    """The defaults of ``TRAINER.MUTUAL_PROMPT`` as MutualPromptCLIP's keyword arguments, with ``changes``."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    return {**model_arguments(cfg), **changes}
