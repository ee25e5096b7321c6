"""Dassl's classification evaluator: the ``=> result`` block, macro F1 without sklearn, exact under DDP."""
from collections import OrderedDict, defaultdict
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist

from .distributed import is_distributed
from .registry import Registry

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def _gather(values: List[int]) -> List[int]:
    if not is_distributed():
        return values
    parts: List[Optional[List[int]]] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, values)
    return [v for part in parts for v in part]


def macro_f1(y_true: List[int], y_pred: List[int]) -> float:
    """Unweighted mean of per-class F1 over the labels present in y_true or y_pred (as sklearn)."""
    labels = sorted(set(y_true) | set(y_pred))
    t, p = np.asarray(y_true), np.asarray(y_pred)
    scores = []
    for c in labels:
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0


@EVALUATOR_REGISTRY.register()
class Classification:
    def __init__(self, cfg, lab2cname: Optional[Dict[int, str]] = None, **kwargs) -> None:
        self.cfg = cfg
        self._lab2cname = lab2cname
        self.reset()

    def reset(self) -> None:
        self._y_true: List[int] = []
        self._y_pred: List[int] = []

    def process(self, mo: torch.Tensor, gt: torch.Tensor) -> None:
        self._y_pred.extend(mo.max(1)[1].cpu().tolist())
        self._y_true.extend(gt.cpu().tolist())

    def evaluate(self) -> "OrderedDict[str, float]":
        y_true, y_pred = _gather(self._y_true), _gather(self._y_pred)
        total = len(y_true)
        correct = sum(int(a == b) for a, b in zip(y_true, y_pred))
        acc = 100.0 * correct / total if total else 0.0
        results = OrderedDict(accuracy=acc, error=100.0 - acc, macro_f1=100.0 * macro_f1(y_true, y_pred))
        print(
            "=> result\n"
            f"* total: {total:,}\n"
            f"* correct: {correct:,}\n"
            f"* accuracy: {acc:.1f}%\n"
            f"* error: {100.0 - acc:.1f}%\n"
            f"* macro_f1: {results['macro_f1']:.1f}%"
        )
        if self.cfg.TEST.PER_CLASS_RESULT:
            per_class = defaultdict(lambda: [0, 0])
            for t, p in zip(y_true, y_pred):
                per_class[t][0] += int(t == p)
                per_class[t][1] += 1
            accs = []
            print("=> per-class result")
            for label in sorted(per_class):
                ok, n = per_class[label]
                accs.append(100.0 * ok / n)
                name = self._lab2cname[label] if self._lab2cname else label
                print(f"* class: {label} ({name})\ttotal: {n:,}\tcorrect: {ok:,}\tacc: {accs[-1]:.1f}%")
            results["perclass_accuracy"] = float(np.mean(accs))
            print(f"* average: {results['perclass_accuracy']:.1f}%")
        if self.cfg.TEST.COMPUTE_CMAT:
            n = max(max(y_true, default=0), max(y_pred, default=0)) + 1
            cmat = np.zeros((n, n), dtype=np.int64)
            for t, p in zip(y_true, y_pred):
                cmat[t, p] += 1
            results["confusion_matrix"] = cmat.tolist()
        return results


def build_evaluator(cfg, **kwargs) -> Classification:
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
