"""The host runtime: real Dassl when it imports, else the built-in ``mutual_prompt.engine``.

Trainers and datasets import these names from here and never from ``dassl`` directly, so the same
files run in this repository and inside a user's CoOp-style repository. Set
``MUTUAL_PROMPT_BACKEND=dassl`` or ``builtin`` to force one. The learning-rate schedulers always come
from ``mutual_prompt.engine.optim`` (Dassl 0.6.3's warm-up schedulers fail on current PyTorch).
"""
import os
from typing import Any, Dict

__all__ = [
    "BACKEND",
    "TRAINER_REGISTRY",
    "TrainerX",
    "build_trainer",
    "DATASET_REGISTRY",
    "DatasetBase",
    "Datum",
    "get_cfg_default",
    "DataManager",
    "build_optimizer",
    "build_lr_scheduler",
    "compute_accuracy",
    "load_checkpoint",
    "load_pretrained_weights",
    "setup_logger",
    "set_random_seed",
    "collect_env_info",
    "mkdir_if_missing",
    "read_json",
    "write_json",
    "listdir_nohidden",
]

_ENV = "MUTUAL_PROMPT_BACKEND"


def _dassl_names() -> Dict[str, Any]:
    from dassl.config import get_cfg_default as dassl_cfg_default
    from dassl.data import DataManager
    from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
    from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
    from dassl.metrics import compute_accuracy
    from dassl.optim import build_optimizer
    from dassl.utils import (
        collect_env_info,
        listdir_nohidden,
        load_checkpoint,
        load_pretrained_weights,
        mkdir_if_missing,
        read_json,
        set_random_seed,
        setup_logger,
        write_json,
    )

    from .engine.config import Config
    from .engine.optim import build_lr_scheduler

    def get_cfg_default():
        # Dassl's defaults, in a node whose merge errors name the key and the file.
        return Config(dassl_cfg_default())

    return dict(locals())


def _builtin_names() -> Dict[str, Any]:
    from . import engine

    return {name: getattr(engine, name) for name in __all__ if name != "BACKEND"}


def _select() -> Dict[str, Any]:
    choice = os.environ.get(_ENV, "").strip().lower()
    if choice not in ("", "auto", "dassl", "builtin"):
        raise ValueError(f"{_ENV}={choice!r} is not one of: dassl, builtin (or unset for automatic)")
    if choice == "builtin":
        return dict(_builtin_names(), BACKEND="builtin")
    try:
        names = _dassl_names()
    except Exception as e:  # Dassl missing, or present but broken (e.g. without its dependencies)
        if choice == "dassl":
            raise ImportError(
                f"{_ENV}=dassl, but Dassl could not be imported ({type(e).__name__}: {e}). Install "
                "Dassl.pytorch (https://github.com/KaiyangZhou/Dassl.pytorch) or unset the variable "
                "to use the built-in runtime."
            ) from e
        return dict(_builtin_names(), BACKEND="builtin")
    return dict({k: names[k] for k in __all__ if k != "BACKEND"}, BACKEND="dassl")


globals().update(_select())
