"""The host runtime: real Dassl when it imports, else the built-in ``mutual_prompt.runtime``.

Trainers and datasets import the names that differ by host from here and never from ``dassl`` or
``mutual_prompt.runtime`` directly, so the same files run in this repository and inside a user's
CoOp-style repository. Set ``MUTUAL_PROMPT_BACKEND=dassl`` or ``builtin`` to force one.

What does not depend on the host is used under both, from its own module: ``mutual_prompt.files``
(atomic writes, JSON, listing), ``mutual_prompt.run.lr_schedulers`` (Dassl 0.6.3's warm-up schedulers fail
on current PyTorch) and ``mutual_prompt.run.config`` (merge errors that name the key and the file, and
the config keys Dassl's defaults lack).
"""
import functools
import io
import os
import sys
from typing import Callable, Optional

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
        from dassl.utils import collect_env_info, load_pretrained_weights, set_random_seed
        from dassl.utils import setup_logger as _dassl_setup_logger

        BACKEND = "dassl"
    except Exception as e:  # Dassl missing, or present but broken (e.g. without its dependencies)
        if _CHOICE == "dassl":
            raise ImportError(
                f"{_ENV}=dassl, but Dassl could not be imported ({type(e).__name__}: {e}). Install "
                "Dassl.pytorch (https://github.com/KaiyangZhou/Dassl.pytorch) or unset the variable "
                "to use the built-in runtime."
            ) from e


def line_buffered_log(setup_logger: Callable[[Optional[str]], None]) -> Callable[[Optional[str]], None]:
    """``setup_logger`` with its log file line-buffered.

    Dassl's ``setup_logger`` replaces ``sys.stdout`` with a logger whose ``file`` is opened with
    ``open(fpath, "w")``: block-buffered, so a run killed without warning would lose the lines
    printed since the last 8 KB. Each line reaches the file as it is printed instead.
    """

    @functools.wraps(setup_logger)
    def setup_line_buffered_logger(output: Optional[str] = None) -> None:
        setup_logger(output)
        log_file = getattr(sys.stdout, "file", None)
        if isinstance(log_file, io.TextIOWrapper):
            log_file.reconfigure(line_buffering=True)

    return setup_line_buffered_logger


if BACKEND == "dassl":
    from .run.config import Config

    setup_logger = line_buffered_log(_dassl_setup_logger)

    def get_cfg_default() -> Config:
        """Dassl's defaults, in a node whose merge errors name the key and the file."""
        return Config(_dassl_cfg_default())

else:
    from .runtime import (
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
