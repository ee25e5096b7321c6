"""Importing this package registers every trainer into the backend's TRAINER_REGISTRY.

Each module listed in ``TRAINER_MODULES`` registers its trainer(s) on import and provides
``extend_cfg(cfg)`` for its config keys; adding a trainer is adding its module name here.
"""
import importlib
from types import ModuleType
from typing import List

TRAINER_MODULES = ["mutual_prompt", "zeroshot_mp"]

_modules: List[ModuleType] = [importlib.import_module(f"{__name__}.{name}") for name in TRAINER_MODULES]


def extend_cfg(cfg) -> None:
    """Add every trainer's config keys to ``cfg`` (each ``extend_cfg`` is idempotent)."""
    for module in _modules:
        module.extend_cfg(cfg)
