"""LinearProbeMP: linear-probe CLIP, the few-shot baseline of CoOp's figure (its ``lpclip/``).

Frozen CLIP image features (``encode_image``, test-time transform, no augmentation) of the few-shot
training set, and a multinomial logistic regression on them (scikit-learn, L2). The regularisation
strength C is searched on the few-shot validation set as CoOp does: a coarse grid, then steps that
halve a log10 interval around the best value; the C with the best validation accuracy is refitted on
the training features. The fitted classifier is saved as a ``nn.Linear`` state dict
(``<output>/linear_probe/model.pth.tar-1`` and ``model-best.pth.tar``), so ``--eval-only`` loads it
with ``weights_only=True`` like any checkpoint. ``train()`` fits, then evaluates as a training run
does at its end (``Finish training``, then ``=> result``).

Features are cached (``FEATURES_FOLDER`` in the dataset's folder, else in the output folder) per
split content (the images and labels: dataset, split, shots and seed), CLIP weights (their SHA-256),
precision and test-time input keys; a cache made with anything else is never read.
"""
import copy
import hashlib
import json
import math
import os
import warnings
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm
from yacs.config import CfgNode as CN

from mutual_prompt.backend import BACKEND, TRAINER_REGISTRY, TrainerX
from mutual_prompt.clip import (
    PromptImageEncoder,
    autocast,
    backbone_identity,
    is_vision_transformer,
    load_frozen_clip,
    resolve_precision,
)
from mutual_prompt.run.checkpoints import load_torch_file, load_trained_models, save_checkpoint, write_torch_file
from mutual_prompt.run.config import add_keys_dassl_lacks
from mutual_prompt.run.config_checks import validate_cfg
from mutual_prompt.run.console import detail
from mutual_prompt.run.fingerprint import TEST_TIME_TRANSFORMS
from mutual_prompt.run.machine import start_under_dassl

MODEL_NAME = "linear_probe"  # the checkpoint folder: <output>/linear_probe/
FEATURES_FOLDER = "clip_features"
# CoOp's coarse grid of C (lpclip/linear_probe.py), strongest regularisation last.
COOP_C_GRID = [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]
FEATURE_INPUT_KEYS = ("SIZE", "INTERPOLATION", "PIXEL_MEAN", "PIXEL_STD", "NO_TRANSFORM")  # beside the test-time steps
VAL_SHOTS = 4  # CoOp's images per class of a few-shot validation set (at most)
SKLEARN_MISSING = 'LinearProbeMP needs scikit-learn: pip install -e ".[linear_probe]" (or pip install scikit-learn)'


class MissingDependency(ValueError):
    """An optional package a trainer needs is not installed; the message says how to install it."""


def extend_cfg(cfg) -> None:
    """Add ``TRAINER.LINEAR_PROBE_MP.*`` (and keys real Dassl lacks) to ``cfg``; idempotent."""
    add_keys_dassl_lacks(cfg)
    if "LINEAR_PROBE_MP" in cfg.TRAINER:
        return
    lp = CN()
    lp.PREC = "fp16"  # CLIP's precision for the features (fp32 on the CPU), fp32, amp or bf16
    lp.C_GRID = list(COOP_C_GRID)  # the coarse search over C, in this order (ties: the first)
    lp.SEARCH_STEPS = 8  # steps refining C around the grid's best (CoOp: 8); 0: the grid only
    lp.MAX_ITER = 1000  # L-BFGS iterations of each fit
    cfg.TRAINER.LINEAR_PROBE_MP = lp


# The search over C


def search_c(val_accuracy: Callable[[float], float], grid: Sequence[float], steps: int) -> Tuple[float, float]:
    """The C with the best ``val_accuracy(C)`` and that accuracy (ties: the C tried first).

    CoOp's search: every C of ``grid``, then ``steps`` steps over ``[best / 10, best * 10]`` in
    log10 C, each trying both ends and keeping the half towards the better one."""
    tried: Dict[float, float] = {}

    def score(c: float) -> float:
        if c not in tried:
            tried[c] = val_accuracy(c)
            detail(f"C={c:.4g}: val accuracy {100 * tried[c]:.2f}%")
        return tried[c]

    best = max(grid, key=score)
    low, high = math.log10(best) - 1, math.log10(best) + 1
    for _ in range(steps):
        middle = (low + high) / 2
        if score(10 ** low) < score(10 ** high):
            low = middle
        else:
            high = middle
    c = max(tried, key=tried.__getitem__)
    return c, tried[c]


def fit_logistic_regression(features: np.ndarray, labels: np.ndarray, c: float, max_iter: int):
    """scikit-learn's multinomial L2 logistic regression (L-BFGS). Stopping at ``max_iter`` before
    converging (likely with CoOp's largest C, little regularisation) is not an error, as in CoOp's
    search: it is reported in log.txt instead of a warning per fit; other warnings pass through."""
    try:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        raise MissingDependency(SKLEARN_MISSING) from None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier = LogisticRegression(C=c, max_iter=max_iter).fit(features, labels)
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            detail(f"C={c:.4g}: L-BFGS stopped at MAX_ITER {max_iter} before converging")
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return classifier


def as_linear(classifier, num_classes: int) -> nn.Linear:
    """The classifier as ``nn.Linear(D, num_classes)`` with the same argmax: a binary one's single
    row ``w`` becomes rows ``0`` and ``w``."""
    classes = [int(c) for c in classifier.classes_]
    if classes != list(range(num_classes)):
        raise ValueError(f"LinearProbeMP: the training set has labels {classes}, expected every class "
                         f"0..{num_classes - 1}")
    weight = torch.as_tensor(classifier.coef_, dtype=torch.float32)
    bias = torch.as_tensor(classifier.intercept_, dtype=torch.float32)
    if num_classes == 2:
        weight, bias = torch.cat([torch.zeros_like(weight), weight]), torch.cat([torch.zeros_like(bias), bias])
    linear = nn.Linear(weight.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    return linear


def per_class_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """Indices of ``per_class`` items of each label (all of a label that has fewer), drawn with
    ``seed`` (negative: unseeded), in index order."""
    rng = np.random.default_rng(seed if seed >= 0 else None)
    chosen = [rng.choice(np.flatnonzero(labels == label), size=min(per_class, int((labels == label).sum())),
                         replace=False) for label in np.unique(labels)]
    return np.sort(np.concatenate(chosen))


# The feature cache


def cache_key(cfg, precision: str, items: Sequence) -> Dict[str, object]:
    """What features depend on: the CLIP weights, the precision, the test-time input, the images."""
    backbone = cfg.MODEL.BACKBONE
    return {
        "backbone": {"NAME": backbone.NAME, **backbone_identity(backbone.NAME, backbone.PATH)},
        "precision": precision,
        "input": {**{key: list(cfg.INPUT[key]) if isinstance(cfg.INPUT[key], (list, tuple)) else cfg.INPUT[key]
                     for key in FEATURE_INPUT_KEYS if key in cfg.INPUT},
                  "TRANSFORMS": [step for step in cfg.INPUT.TRANSFORMS if step in TEST_TIME_TRANSFORMS]},
        "items_sha256": hashlib.sha256(json.dumps([[os.path.abspath(item.impath), item.label]
                                                   for item in items]).encode()).hexdigest(),
    }


def cache_path(folder: str, split: str, key: Dict[str, object]) -> str:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    return os.path.join(folder, f"{split}-{digest[:20]}.pt")


def read_cache(path: str, key: Dict[str, object], count: int) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The cached features and labels at ``path`` when they were made with ``key`` for ``count``
    images, else None."""
    if not os.path.isfile(path):
        return None
    try:
        cached = load_torch_file(path)
    except Exception as e:  # a damaged file is recomputed and rewritten
        detail(f"Feature cache {path} unreadable ({type(e).__name__}); recomputing")
        return None
    if not isinstance(cached, dict) or cached.get("key") != json.dumps(key, sort_keys=True) \
            or len(cached.get("labels", ())) != count:
        return None
    return cached["features"], cached["labels"]


def features_folder(dataset, output_dir: str) -> str:
    """``<dataset folder>/clip_features`` where the dataset's folder (the ``dataset_dir`` its
    ``__init__`` sets, as CoOp's datasets do) is writable, else the run's."""
    dataset_dir = vars(dataset).get("dataset_dir", "")
    if isinstance(dataset_dir, str) and os.path.isdir(dataset_dir) and os.access(dataset_dir, os.W_OK):
        return os.path.join(dataset_dir, FEATURES_FOLDER)
    return os.path.join(output_dir, FEATURES_FOLDER)


@TRAINER_REGISTRY.register()
class LinearProbeMP(TrainerX):
    """Linear-probe CLIP; ``model_inference`` returns the linear classifier's logits of CLIP's image
    features."""

    def check_cfg(self, cfg) -> None:
        """``validate_cfg`` with this trainer's block; OPTIM is not read."""
        validate_cfg(cfg, training=False, trainer="LinearProbeMP")

    def build_data_loader(self) -> None:
        """Under Dassl, first the run's environment block and the worker cap (see ``start_under_dassl``)."""
        start_under_dassl(BACKEND, self.device, self.cfg)
        super().build_data_loader()

    def build_model(self) -> None:
        cfg = self.cfg
        try:
            import sklearn  # noqa: F401  (fitting needs it: refuse now, not after the features)
        except ImportError:
            raise MissingDependency(SKLEARN_MISSING) from None
        self.precision = resolve_precision(cfg.TRAINER.LINEAR_PROBE_MP.PREC, self.device,
                                           "TRAINER.LINEAR_PROBE_MP.PREC")
        weights = f", weights: {cfg.MODEL.BACKBONE.PATH}" if cfg.MODEL.BACKBONE.PATH else ""
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME}{weights}, precision: {self.precision})")
        clip_model = load_frozen_clip(cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH, self.device,
                                      self.precision, cfg.INPUT.SIZE)
        vit = is_vision_transformer(clip_model.visual)
        self.encode_image = PromptImageEncoder(clip_model.visual) if vit else clip_model.encode_image
        self.features_dir = features_folder(self.dm.dataset, cfg.OUTPUT_DIR)
        self.linear = nn.Linear(clip_model.visual.output_dim, self.num_classes).to(self.device)
        self.register_model(MODEL_NAME, self.linear)

    def split_items(self, split: str) -> List:
        dataset = self.dm.dataset
        items = {"train": dataset.train_x, "val": dataset.val, "test": dataset.test}[split]
        if not items:
            raise ValueError(f"LinearProbeMP: the {split} split of dataset {self.cfg.DATASET.NAME} is empty"
                             + (" (the search over C needs a validation set)" if split == "val" else ""))
        return items

    def features(self, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """CLIP image features [N, D] (float32, on the CPU) and labels [N] of ``split``, from the cache
        when it has them."""
        items = self.split_items(split)
        key = cache_key(self.cfg, self.precision, items)
        path = cache_path(self.features_dir, split, key)
        cached = read_cache(path, key, len(items))
        if cached is not None:
            print(f"Image features of the {split} split ({len(items):,} images): {path}")
            return cached
        features, labels = self.extract(items, split)
        os.makedirs(self.features_dir, exist_ok=True)
        write_torch_file({"key": json.dumps(key, sort_keys=True), "features": features, "labels": labels}, path)
        detail(f"Image features of the {split} split cached in {path}")
        return features, labels

    @torch.no_grad()
    def extract(self, items: Sequence, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """Features of ``items`` through the test loader's dataset class (the host's image reading and
        test transform: no augmentation), in order."""
        wrapper = copy.copy(self.test_loader.dataset)
        wrapper.data_source = list(items)
        loader = DataLoader(wrapper, batch_size=self.cfg.DATALOADER.TEST.BATCH_SIZE, shuffle=False,
                            num_workers=self.cfg.DATALOADER.NUM_WORKERS)
        features, labels = [], []
        for batch in tqdm(loader, desc=f"Image features ({split})"):
            with autocast(self.precision, self.device):
                features.append(self.encode_image(batch["img"].to(self.device)).float().cpu())
            labels.append(torch.as_tensor(batch["label"]))
        return torch.cat(features), torch.cat(labels)

    def validation_features(self) -> Tuple[np.ndarray, np.ndarray]:
        """The val split's features; where a dataset's val split is its test split (ImageNet, as in
        CoOp), ``min(NUM_SHOTS, 4)`` images per class of it drawn with the run's seed, as CoOp's
        ``lpclip`` draws them, instead of searching C on the whole test set."""
        dataset = self.dm.dataset
        if [item.impath for item in dataset.val] != [item.impath for item in dataset.test]:
            return tuple(t.numpy() for t in self.features("val"))
        shots = self.cfg.DATASET.NUM_SHOTS
        per_class = min(shots, VAL_SHOTS) if shots > 0 else VAL_SHOTS
        features, labels = (t.numpy() for t in self.features("test"))
        chosen = per_class_sample(labels, per_class, self.cfg.SEED)
        print(f"The val split is the test split: C is searched on {per_class} of its images per class "
              f"(seed {self.cfg.SEED}), as CoOp's lpclip does")
        return features[chosen], labels[chosen]

    def train(self) -> None:
        """Fit the probe (search over C on val, refit on train), save it, then evaluate."""
        lp = self.cfg.TRAINER.LINEAR_PROBE_MP
        train_x, train_y = (t.numpy() for t in self.features("train"))
        searching = len(lp.C_GRID) > 1 or lp.SEARCH_STEPS > 0
        if searching:
            val_x, val_y = self.validation_features()

            def val_accuracy(c: float) -> float:
                return float((fit_logistic_regression(train_x, train_y, c, lp.MAX_ITER).predict(val_x) == val_y).mean())

            print(f"Searching C on the val split ({len(val_y):,} images): {len(lp.C_GRID)} values, "
                  f"then {lp.SEARCH_STEPS} steps")
            c, val_result = search_c(val_accuracy, lp.C_GRID, lp.SEARCH_STEPS)
            print(f"Best C: {c:.4g} (val accuracy {100 * val_result:.2f}%)")
        else:
            c, val_result = lp.C_GRID[0], None
        classifier = fit_logistic_regression(train_x, train_y, c, lp.MAX_ITER)
        fitted = as_linear(classifier, self.num_classes)
        self.linear.load_state_dict(fitted.state_dict())
        save_checkpoint({"state_dict": self.linear.state_dict(), "epoch": 1, "optimizer": None, "scheduler": None,
                         "val_result": None if val_result is None else 100 * val_result, "C": float(c)},
                        os.path.join(self.output_dir, MODEL_NAME), is_best=True)
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            self.test()

    @torch.no_grad()
    def test(self, split: Optional[str] = None) -> float:
        """Evaluate on ``split`` (TEST.SPLIT by default) from its features; the evaluator prints
        ``=> result`` as for every trainer."""
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and not self.dm.dataset.val:
            split = "test"
        features, labels = self.features(split)
        print(f"Evaluate on the *{split}* set")
        self.linear.eval()
        self.evaluator.reset()
        batch = self.cfg.DATALOADER.TEST.BATCH_SIZE
        for start in range(0, len(labels), batch):
            logits = self.linear(features[start:start + batch].to(self.device))
            self.evaluator.process(logits, labels[start:start + batch].to(self.device))
        results = self.evaluator.evaluate()
        return list(results.values())[0]

    def model_inference(self, image: torch.Tensor) -> torch.Tensor:
        with autocast(self.precision, self.device):
            features = self.encode_image(image).float()
        return self.linear(features)

    def load_model(self, directory: str, epoch: Optional[int] = None) -> None:
        """The fitted probe from ``<directory>/linear_probe/`` (``model.pth.tar-1`` or
        ``model-best.pth.tar``), read with ``weights_only=True`` under either host."""
        if not directory:
            raise ValueError("LinearProbeMP: --eval-only needs --model-dir <the --output-dir of the run that "
                             "fitted the probe>")
        load_trained_models(self._models, directory, epoch)
