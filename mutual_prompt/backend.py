"""The host runtime: real Dassl when it imports, else the built-in ``mutual_prompt.engine``.

Trainers and datasets import the names that differ by host from here and never from ``dassl`` or
``mutual_prompt.engine`` directly, so the same files run in this repository and inside a user's
CoOp-style repository. Set ``MUTUAL_PROMPT_BACKEND=dassl`` or ``builtin`` to force one.

What does not depend on the host is used under both, from its own module: ``mutual_prompt.files``
(atomic writes, JSON, listing), ``mutual_prompt.lr_schedulers`` (Dassl 0.6.3's warm-up schedulers fail
on current PyTorch) and ``mutual_prompt.config`` (merge errors that name the key and the file, and
the config keys Dassl's defaults lack).
"""
import os

__all__ = [
    "BACKEND",
    "TRAINER_REGISTRY",
    "TrainerX",
    "build_trainer",
    "DATASET_REGISTRY",
    "DatasetBase",
    "Datum",
    "get_cfg_default",
    "build_optimizer",
    "compute_accuracy",
    "load_pretrained_weights",
    "setup_logger",
    "set_random_seed",
    "collect_env_info",
]

_ENV = "MUTUAL_PROMPT_BACKEND"


def _backend_choice() -> str:
    """The environment variable's value: ``dassl``, ``builtin``, or empty/``auto`` (Dassl if it imports)."""
    choice = os.environ.get(_ENV, "").strip().lower()
    if choice not in ("", "auto", "dassl", "builtin"):
        raise ValueError(f"{_ENV}={choice!r} is not one of: dassl, builtin (or unset for automatic)")
    return choice


_CHOICE = _backend_choice()
BACKEND = "builtin"
if _CHOICE != "builtin":
    try:
        from dassl.config import get_cfg_default as _dassl_cfg_default
        from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
        from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
        from dassl.metrics import compute_accuracy
        from dassl.optim import build_optimizer
        from dassl.utils import collect_env_info, load_pretrained_weights, set_random_seed, setup_logger

        BACKEND = "dassl"
    except Exception as e:  # Dassl missing, or present but broken (e.g. without its dependencies)
        if _CHOICE == "dassl":
            raise ImportError(
                f"{_ENV}=dassl, but Dassl could not be imported ({type(e).__name__}: {e}). Install "
                "Dassl.pytorch (https://github.com/KaiyangZhou/Dassl.pytorch) or unset the variable "
                "to use the built-in runtime."
            ) from e

if BACKEND == "dassl":
    from .config import Config

    def get_cfg_default() -> Config:
        """Dassl's defaults, in a node whose merge errors name the key and the file."""
        return Config(_dassl_cfg_default())

else:
    from .engine import (
        DATASET_REGISTRY,
        TRAINER_REGISTRY,
        DatasetBase,
        Datum,
        TrainerX,
        build_optimizer,
        build_trainer,
        collect_env_info,
        compute_accuracy,
        get_cfg_default,
        load_pretrained_weights,
        set_random_seed,
        setup_logger,
    )
