"""What a resumed run restores beyond the weights, host-independently (built-in engine or Dassl).

``best_val_so_far``: with ``TEST.FINAL_MODEL best_val`` the best validation result and its epoch at
the checkpoint a run resumes from, so that a later, worse epoch does not replace ``model-best``.
"""
import math
import os
from typing import Optional, Sequence, Tuple

import torch

BEST_FILE = "model-best.pth.tar"
POINTER_FILE = "checkpoint"


def _load(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def best_val_so_far(directory: str, names: Sequence[str]) -> Tuple[float, Optional[int]]:
    """(best val result, its 1-based epoch) recorded for the checkpoints under ``directory``.

    The resumed checkpoint's own ``best_result``/``best_epoch`` when it has them (the built-in
    engine writes them); else ``model-best.pth.tar``'s ``val_result`` and ``epoch`` (what Dassl and
    CoOp write); else (-inf, None): no best yet.
    """
    for name in names:
        pointer = os.path.join(directory, name, POINTER_FILE)
        if not os.path.isfile(pointer):
            continue
        with open(pointer, "r") as f:
            newest = f.readline().strip()
        path = os.path.join(directory, name, newest)
        if newest and os.path.isfile(path):
            checkpoint = _load(path)
            if checkpoint.get("best_result") is not None:
                return float(checkpoint["best_result"]), checkpoint.get("best_epoch")
    for name in names:
        path = os.path.join(directory, name, BEST_FILE)
        if os.path.isfile(path):
            checkpoint = _load(path)
            if checkpoint.get("val_result") is not None:
                return float(checkpoint["val_result"]), checkpoint.get("epoch")
    return -math.inf, None
