"""Importing this package registers every trainer into the backend's TRAINER_REGISTRY.

Each trainer module registers its trainer(s) on import and provides ``extend_cfg(cfg)`` for its
config keys; adding a trainer is importing its module here and listing it in ``TRAINER_MODULES``.
"""
from . import linear_probe_mp, mutual_prompt, zeroshot_mp

TRAINER_MODULES = (mutual_prompt, zeroshot_mp, linear_probe_mp)


def extend_cfg(cfg) -> None:
    """Add every trainer's config keys to ``cfg`` (each ``extend_cfg`` is idempotent)."""
    for module in TRAINER_MODULES:
        module.extend_cfg(cfg)
