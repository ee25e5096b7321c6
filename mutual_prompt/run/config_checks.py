"""Config validation in one place, under both hosts.

``validate_cfg`` checks that every enumerated key holds one of its values, every count and size is in
range and the trainer and the dataset are registered, before anything is built or written. train.py
runs it right after the merge and each trainer's ``check_cfg`` runs it when the trainer is built (so a
CoOp-style host repository's train.py gets the same checks); a group of checks that an equal config
has passed in this process is not run again. What needs the loaded CLIP is checked when the model is
built: ``validate_backbone_fit`` (``TVP.DEPTH`` against its layers) and ``load_frozen_clip``
(``INPUT.SIZE`` against its resolution). The modules that read the config trust what is checked here.
"""
import copy
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

from ..backend import DATASET_REGISTRY, TRAINER_REGISTRY
from ..clip import is_vision_transformer
from ..clip.precision import PRECISIONS
from .lr_schedulers import SCHEDULERS, WARMUP_TYPES
from ..method.ftp import FTP_MODES
from ..data.fewshot import SUBSAMPLE_CHOICES
from ..names import unknown_name

FINAL_MODELS = ("last_step", "best_val")
TEST_SPLITS = ("val", "test")
EVALUATORS = ("Classification",)
# The optimizers of Dassl's build_optimizer; the built-in runtime implements the same.
OPTIMIZERS = ("adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
CLASS_TOKEN_POSITIONS = ("end",)

_ABSENT = object()

Checks = Callable[[Any], List[Optional[str]]]


class ConfigError(ValueError):
    """Config values that are not allowed; the message names each key, its value and what is allowed."""


class PassedChecks:
    """The last config that passed ``validate_cfg`` (a copy) and the names of the groups of checks it
    passed; a config equal to it needs only the groups it has not passed."""

    def __init__(self) -> None:
        self.config: Any = None
        self.groups: Set[str] = set()

    def pending(self, cfg, groups: Dict[str, Checks]) -> Dict[str, Checks]:
        if self.config is None or self.config != cfg:
            self.config, self.groups = None, set()
        return {name: checks for name, checks in groups.items() if name not in self.groups}

    def record(self, cfg, groups: Dict[str, Checks]) -> None:
        if self.config is None:
            self.config = copy.deepcopy(cfg)
        self.groups |= set(groups)


PASSED = PassedChecks()


def validate_cfg(cfg, training: bool = True, trainer: Optional[str] = None) -> None:
    """Raise ``ConfigError`` naming every problem of ``cfg``; ``training`` adds the keys only training
    reads. ``trainer`` (a trainer's ``check_cfg`` passes its own name) is the trainer whose block is
    checked, else ``TRAINER.NAME``'s. Groups of checks an equal config passed before are skipped, so
    train.py's call and the trainer's ``check_cfg`` check each key once per process."""
    pending = PASSED.pending(cfg, check_groups(cfg, training, trainer))
    raise_problems([problem for checks in pending.values() for problem in checks(cfg)])
    PASSED.record(cfg, pending)


def validate_backbone_fit(cfg, clip_model) -> None:
    """Raise ``ConfigError`` where ``TRAINER.MUTUAL_PROMPT`` asks more of the loaded ``clip_model``
    than it has: TVP on an image tower that is not a vision transformer, ``TVP.DEPTH`` deeper than it."""
    mp = cfg.TRAINER.MUTUAL_PROMPT
    backbone = cfg.MODEL.BACKBONE.NAME or cfg.MODEL.BACKBONE.PATH
    if mp.TVP.ENABLED and not is_vision_transformer(clip_model.visual):
        raise ConfigError(f"TRAINER.MUTUAL_PROMPT.TVP.ENABLED True needs a vision transformer image tower: TVP appends "
                          f"its prompt tokens to the tower's token sequence, and the image tower of {backbone} "
                          f"({type(clip_model.visual).__name__}) has none; set TRAINER.MUTUAL_PROMPT.TVP.ENABLED "
                          "False (FTP only), or use a ViT backbone")
    layers = getattr(getattr(clip_model.visual, "transformer", None), "layers", None)
    if mp.TVP.ENABLED and layers is not None and mp.TVP.DEPTH > layers:
        raise ConfigError(f"TRAINER.MUTUAL_PROMPT.TVP.DEPTH {mp.TVP.DEPTH} is deeper than the backbone's vision "
                          f"transformer ({backbone}: {layers} layers); "
                          f"use at most {layers}")


def raise_problems(problems: Sequence[Optional[str]]) -> None:
    found = [problem for problem in problems if problem]
    if found:
        raise ConfigError("; ".join(found))


def check_groups(cfg, training: bool = True, trainer: Optional[str] = None) -> Dict[str, Checks]:
    """The groups of checks ``validate_cfg`` runs, by name, in the order of their messages."""
    groups: Dict[str, Checks] = {} if trainer else {"TRAINER.NAME": trainer_name_problems}
    groups["common"] = common_problems
    if training:
        groups["OPTIM"] = optim_problems
    name = trainer or lookup(cfg, "TRAINER.NAME")
    if name in TRAINER_PROBLEMS:
        groups[f"TRAINER {name}"] = TRAINER_PROBLEMS[name]
    return groups


def config_problems(cfg, training: bool = True, trainer: Optional[str] = None) -> List[str]:
    """One message per problem of ``cfg`` (none for a valid config); see ``validate_cfg``."""
    found = [problem for checks in check_groups(cfg, training, trainer).values() for problem in checks(cfg)]
    return [problem for problem in found if problem]


def trainer_name_problems(cfg) -> List[Optional[str]]:
    return [registered(cfg, "TRAINER.NAME", TRAINER_REGISTRY, "trainer", "--trainer")]


def common_problems(cfg) -> List[Optional[str]]:
    return [
        registered(cfg, "DATASET.NAME", DATASET_REGISTRY, "dataset", "--dataset-config-file"),
        one_of(cfg, "TEST.FINAL_MODEL", FINAL_MODELS),
        one_of(cfg, "TEST.SPLIT", TEST_SPLITS),
        one_of(cfg, "TEST.EVALUATOR", EVALUATORS),
        one_of(cfg, "DATASET.SUBSAMPLE_CLASSES", SUBSAMPLE_CHOICES),
        one_of(cfg, "INPUT.INTERPOLATION", INTERPOLATIONS),
        image_size(cfg, "INPUT.SIZE"),
        at_least(cfg, "DATASET.NUM_SHOTS", -1),
        at_least(cfg, "DATALOADER.TRAIN_X.BATCH_SIZE", 1),
        at_least(cfg, "DATALOADER.TRAIN_U.BATCH_SIZE", 1),
        at_least(cfg, "DATALOADER.TEST.BATCH_SIZE", 1),
        at_least(cfg, "DATALOADER.NUM_WORKERS", 0),
        at_least(cfg, "DATALOADER.K_TRANSFORMS", 1),
        at_least(cfg, "TRAIN.PRINT_FREQ", 1),
        at_least(cfg, "TRAIN.CHECKPOINT_FREQ", 0),
    ]


def optim_problems(cfg) -> List[Optional[str]]:
    problems = [
        one_of(cfg, "OPTIM.NAME", OPTIMIZERS),
        one_of(cfg, "OPTIM.LR_SCHEDULER", SCHEDULERS),
        at_least(cfg, "OPTIM.MAX_EPOCH", 1),
        positive(cfg, "OPTIM.LR"),
    ]
    warmup_epoch = lookup(cfg, "OPTIM.WARMUP_EPOCH")
    if isinstance(warmup_epoch, int) and warmup_epoch > 0:
        problems.append(one_of(cfg, "OPTIM.WARMUP_TYPE", WARMUP_TYPES))
    return problems


def mutual_prompt_problems(cfg) -> List[Optional[str]]:
    """TRAINER.MUTUAL_PROMPT.*; TVP.DEPTH against the backbone's depth: ``validate_backbone_fit``."""
    key = "TRAINER.MUTUAL_PROMPT"
    problems = [
        one_of(cfg, f"{key}.PREC", PRECISIONS),
        one_of(cfg, f"{key}.FTP.MODE", FTP_MODES),
        one_of(cfg, f"{key}.CLASS_TOKEN_POSITION", CLASS_TOKEN_POSITIONS,
               "the per-image context is shared across classes only when it precedes the class name"),
        at_least(cfg, f"{key}.N_CTX", 1),
        at_least(cfg, f"{key}.TEXT_CHUNK", 0),
    ]
    if lookup(cfg, f"{key}.TVP.ENABLED") is True:
        problems += [at_least(cfg, f"{key}.TVP.{name}", 1) for name in ("TOPK", "N_TOKENS", "DEPTH")]
        problems.append(positive(cfg, f"{key}.TVP.TEMP"))
    return problems


def zeroshot_problems(cfg) -> List[Optional[str]]:
    template = lookup(cfg, "TRAINER.ZEROSHOT_MP.TEMPLATE")
    problems = [one_of(cfg, "TRAINER.ZEROSHOT_MP.PREC", PRECISIONS), boolean(cfg, "TRAINER.ZEROSHOT_MP.ENSEMBLE")]
    if isinstance(template, str) and template and template.count("{}") != 1:  # "": the dataset's template
        problems.append(f"TRAINER.ZEROSHOT_MP.TEMPLATE must contain exactly one '{{}}' for the class name, "
                        f"got {template!r}")
    return problems


def linear_probe_problems(cfg) -> List[Optional[str]]:
    key = "TRAINER.LINEAR_PROBE_MP"
    grid = lookup(cfg, f"{key}.C_GRID")
    problems = [one_of(cfg, f"{key}.PREC", PRECISIONS), at_least(cfg, f"{key}.SEARCH_STEPS", 0),
                at_least(cfg, f"{key}.MAX_ITER", 1)]
    if grid is not _ABSENT and not (isinstance(grid, (list, tuple)) and grid and all(
            isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 for c in grid)):
        problems.append(f"{key}.C_GRID must be a non-empty list of positive numbers, got {grid!r} (YAML reads 1e6 "
                        "as text: write 1.0e+6)")
    return problems


# The checks of each trainer's own block, by TRAINER.NAME: another trainer's block is not read.
TRAINER_PROBLEMS: Dict[str, Checks] = {
    "MutualPrompt": mutual_prompt_problems,
    "ZeroshotMP": zeroshot_problems,
    "LinearProbeMP": linear_probe_problems,
}


def lookup(cfg, key: str) -> Any:
    """The value at the dotted ``key``, or ``_ABSENT`` where the config has no such key (a host's
    defaults may lack it)."""
    node = cfg
    for name in key.split("."):
        if not hasattr(node, "keys") or name not in node:
            return _ABSENT
        node = node[name]
    return node


def has_key(cfg, key: str) -> bool:
    """Whether ``cfg`` has the dotted ``key``."""
    return lookup(cfg, key) is not _ABSENT


def one_of(cfg, key: str, allowed: Sequence[str], why: str = "") -> Optional[str]:
    value = lookup(cfg, key)
    if value is _ABSENT or value in allowed:
        return None
    reason = f" ({why})" if why else ""
    return f"{key} must be one of {', '.join(allowed)}, got {value!r}{reason}"


def at_least(cfg, key: str, low: int) -> Optional[str]:
    value = lookup(cfg, key)
    if value is _ABSENT or (_is_int(value) and value >= low):
        return None
    return f"{key} must be >= {low}, got {value!r}"


def positive(cfg, key: str) -> Optional[str]:
    value = lookup(cfg, key)
    if value is _ABSENT or (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0):
        return None
    return f"{key} must be > 0, got {value!r}"


def boolean(cfg, key: str) -> Optional[str]:
    value = lookup(cfg, key)
    if value is _ABSENT or isinstance(value, bool):
        return None
    return f"{key} must be True or False, got {value!r}"


def image_size(cfg, key: str) -> Optional[str]:
    value = lookup(cfg, key)
    if value is _ABSENT or (isinstance(value, (list, tuple)) and len(value) == 2
                            and all(_is_int(side) and side > 0 for side in value)):
        return None
    return f"{key} must be two positive integers (height, width), got {value!r}"


def registered(cfg, key: str, registry, kind: str, flag: str) -> Optional[str]:
    value = lookup(cfg, key)
    if value is _ABSENT:
        return None
    names = sorted(registry.registered_names())
    if value in names:
        return None
    if not value:
        return f"{key} is empty; set it ({flag}) to one of the registered {kind}s: {', '.join(names) or '(none)'}"
    return f"{key} ({flag}): {unknown_name(kind, str(value), names)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
