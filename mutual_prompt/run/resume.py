"""What a resumed run must restore beyond the weights, host-independently (built-in engine or
Dassl); what it must match is ``mutual_prompt.run.fingerprint``.

- ``best_val_so_far``: with ``TEST.FINAL_MODEL best_val``, the best validation result and its epoch
  at the checkpoint a run resumes from, so that a later, worse epoch does not replace ``model-best``;
- ``repair_checkpoint_pointers``: a missing or empty ``checkpoint`` pointer, an unreadable newest
  checkpoint, or models whose pointers disagree (a run stopped between writing a checkpoint and its
  pointer) is reported, and every pointer moved to the newest checkpoint intact for all models.
"""
import math
import os
import re
from typing import List, Optional, Sequence, Tuple

import torch

from .checkpoint_loading import BEST_MODEL_FILE, EPOCH_MODEL_PREFIX, read_checkpoint
from ..files import atomic_path

POINTER_FILE = "checkpoint"
EPOCH_CHECKPOINT = re.compile("^" + re.escape(EPOCH_MODEL_PREFIX) + r"(\d+)$")


def _load(path: str) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def read_pointer(model_dir: str) -> str:
    """The file name in ``<model_dir>/checkpoint`` ("" when the pointer is missing or empty)."""
    pointer = os.path.join(model_dir, POINTER_FILE)
    if not os.path.isfile(pointer):
        return ""
    with open(pointer, "r") as f:
        return f.readline().strip()


def write_pointer(model_dir: str, name: str) -> None:
    """Make ``<model_dir>/checkpoint`` name ``name``, atomically."""
    with atomic_path(os.path.join(model_dir, POINTER_FILE)) as tmp:
        with open(tmp, "w") as f:
            f.write(f"{name}\n")


def best_val_so_far(directory: str, names: Sequence[str]) -> Tuple[float, Optional[int]]:
    """(best val result, its 1-based epoch) recorded for the checkpoints under ``directory``.

    The resumed checkpoint's own ``best_result``/``best_epoch`` when it has them (the built-in
    engine writes them); else ``model-best.pth.tar``'s ``val_result`` and ``epoch`` (what Dassl and
    CoOp write); else (-inf, None): no best yet.
    """
    for name in names:
        newest = read_pointer(os.path.join(directory, name))
        path = os.path.join(directory, name, newest)
        if newest and os.path.isfile(path):
            checkpoint = _load(path)
            if checkpoint.get("best_result") is not None:
                return float(checkpoint["best_result"]), checkpoint.get("best_epoch")
    for name in names:
        path = os.path.join(directory, name, BEST_MODEL_FILE)
        if os.path.isfile(path):
            checkpoint = _load(path)
            if checkpoint.get("val_result") is not None:
                return float(checkpoint["val_result"]), checkpoint.get("epoch")
    return -math.inf, None


def _model_dirs(directory: str) -> List[str]:
    """The model folders of ``directory``: those holding a ``checkpoint`` pointer or an epoch checkpoint."""
    if not os.path.isdir(directory):
        return []
    paths = (os.path.join(directory, name) for name in sorted(os.listdir(directory)))
    return [path for path in paths if os.path.isdir(path)
            and (os.path.isfile(os.path.join(path, POINTER_FILE)) or _epoch_checkpoints(path))]


def has_checkpoints(directory: str) -> bool:
    """Whether ``directory`` holds a model folder with checkpoints (a run to resume)."""
    return bool(_model_dirs(directory))


def _epoch_checkpoints(model_dir: str) -> set:
    return {int(m.group(1)) for m in map(EPOCH_CHECKPOINT.match, os.listdir(model_dir)) if m}


def _is_intact(path: str) -> bool:
    try:
        return "epoch" in read_checkpoint(path)
    except ValueError:
        return False


def _pointer_problem(model_dir: str) -> str:
    """What is wrong with the checkpoint that ``<model_dir>/checkpoint`` names ("" if nothing)."""
    pointer = os.path.join(model_dir, POINTER_FILE)
    if not os.path.isfile(pointer):
        newest = max(_epoch_checkpoints(model_dir))
        return (f"{pointer} is missing though {EPOCH_MODEL_PREFIX}{newest} is there (the run stopped between writing "
                "a checkpoint and its pointer)")
    name = read_pointer(model_dir)
    if not name:
        return f"{pointer} is empty"
    path = os.path.join(model_dir, name)
    if not os.path.isfile(path):
        return f"{path}, named by {pointer}, does not exist"
    if not _is_intact(path):
        return f"the newest checkpoint {path} is corrupt (truncated or not a checkpoint)"
    return ""


def repair_checkpoint_pointers(directory: str) -> List[str]:
    """Point every model's ``checkpoint`` file of ``directory`` at an intact checkpoint, of one epoch
    for all models; return what was wrong and what was done (empty when nothing was).

    Raises ``RuntimeError`` when some model has no intact checkpoint to resume from.
    """
    model_dirs = _model_dirs(directory)
    problems = [problem for problem in map(_pointer_problem, model_dirs) if problem]
    pointed = {os.path.basename(d): read_pointer(d) for d in model_dirs}
    if not problems and len(set(pointed.values())) > 1:
        problems.append("the models' checkpoint pointers name different checkpoints ("
                        + ", ".join(f"{model}: {name}" for model, name in pointed.items()) + ")")
    if not problems:
        return []
    common = set.intersection(*(_epoch_checkpoints(d) for d in model_dirs))
    epoch = next((e for e in sorted(common, reverse=True)
                  if all(_is_intact(os.path.join(d, f"{EPOCH_MODEL_PREFIX}{e}")) for d in model_dirs)), None)
    if epoch is None:
        raise RuntimeError(
            f"Cannot resume from {directory}: {'; '.join(problems)}, and no earlier intact checkpoint exists "
            "for every model. Delete the folder (or use another --output-dir) to train from scratch."
        )
    for model_dir in model_dirs:
        write_pointer(model_dir, f"{EPOCH_MODEL_PREFIX}{epoch}")
    return problems + [f"resuming from the newest intact checkpoint instead: epoch {epoch}"]


def newest_checkpoint(directory: str) -> Optional[str]:
    """The checkpoint a re-run resumes from, as the first model folder shows it: the file its pointer
    names, else its newest epoch checkpoint (stopped before the pointer was written; a re-run repairs it)."""
    for model_dir in _model_dirs(directory):
        epochs = _epoch_checkpoints(model_dir)
        name = read_pointer(model_dir) or (f"{EPOCH_MODEL_PREFIX}{max(epochs)}" if epochs else "")
        if name:
            return os.path.join(model_dir, name)
    return None
