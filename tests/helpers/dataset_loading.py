"""A registered dataset built from a generated tree as CoOp's train.py builds it, and its items as
comparable records."""
from typing import List

import datasets  # noqa: F401  (registers the datasets)
from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.runtime.config import get_cfg_default
from mutual_prompt.runtime.utils import set_random_seed


def make_cfg(root: str, name: str, shots: int = -1, subsample: str = "all", seed: int = 1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.SEED = seed
    return cfg


def load(root: str, name: str, shots: int = -1, subsample: str = "all", seed: int = 1):
    """Seed ``random`` as CoOp's train.py does, then build the dataset from the registry."""
    cfg = make_cfg(root, name, shots, subsample, seed)
    set_random_seed(cfg.SEED)
    return DATASET_REGISTRY.get(name)(cfg)


def records(items: List[Datum]):
    return [(item.impath, item.label, item.classname) for item in items]
