"""Loading a trained checkpoint for evaluation: find the file, read it safely, load it strictly.

Host-independent (used by our trainers under real Dassl and by the built-in engine). A checkpoint
that does not match the model is an error that names the missing and unexpected keys and the shape
mismatches: loading with ``strict=False`` would silently leave the unmatched parts untrained.
"""
import os
from collections import OrderedDict
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

BEST_MODEL_FILE = "model-best.pth.tar"
WEIGHTS_ONLY_FAILURE = "Weights only load failed"  # how torch.load(weights_only=True) starts its refusal
EPOCH_MODEL_PREFIX = "model.pth.tar-"
TRUST_HINT = (
    "Files written by CoOp's or CoCoOp's trainers pickle Python objects (the learning-rate scheduler) and "
    "cannot be read this way; if you trust the file, convert it once with "
    "`python -m mutual_prompt.convert from-coop --trust {path} OUT_DIR`"
)


class StateDictMismatchError(ValueError):
    """A checkpoint's tensors do not match the model's: missing, unexpected or differently shaped keys."""


def model_checkpoint_path(directory: str, name: str, epoch: Optional[int] = None) -> str:
    """``<directory>/<name>/model.pth.tar-<epoch>``, or ``model-best.pth.tar`` when ``epoch`` is None
    (Dassl's layout); a missing file is an error that lists the checkpoints that are there."""
    folder = os.path.join(directory, name)
    path = os.path.join(folder, BEST_MODEL_FILE if epoch is None else f"{EPOCH_MODEL_PREFIX}{epoch}")
    if os.path.isfile(path):
        return path
    present = sorted(f for f in os.listdir(folder) if f.startswith(("model.pth.tar", "model-best"))) if os.path.isdir(folder) else []
    wanted = "no --load-epoch: the best-validation model, written with TEST.FINAL_MODEL best_val" if epoch is None else f"--load-epoch {epoch}"
    raise FileNotFoundError(
        f'No checkpoint at "{path}" ({wanted}). '
        + (f"{folder} holds: {', '.join(present)}." if present else f"{folder} holds no checkpoint; is --model-dir the output folder of a training run?")
    )


def read_checkpoint(path: str) -> Dict[str, Any]:
    """A Dassl-layout checkpoint dict, read with ``weights_only=True``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Cannot read the checkpoint {path} with torch.load(weights_only=True) ({load_error_reason(e)}). "
            + TRUST_HINT.format(path=path)
        ) from e
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise ValueError(f"{path} is not a checkpoint in Dassl's layout: expected a dict with a 'state_dict' entry")
    return checkpoint


def load_error_reason(error: Exception) -> str:
    """One line of a ``torch.load`` error: what ``weights_only`` refused (without torch's advice to load
    with ``weights_only=False``), else the first line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    refused = [line.split(" was not an allowed global")[0] for line in lines if "Unsupported global" in line]
    refused = [line[line.index("Unsupported global"):] for line in refused]
    if refused:
        return refused[0]
    if lines and lines[0].startswith(WEIGHTS_ONLY_FAILURE):
        detail = next((line for line in lines if line.startswith("Unsupported")), "")
        return "Python objects that torch.load(weights_only=True) does not read" + (f" ({detail})" if detail else "")
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def checkpoint_summary(checkpoint: Mapping[str, Any]) -> str:
    """``epoch=5, val_result=93.1``; each part only when the checkpoint holds it (a last-epoch
    checkpoint stores ``val_result=None``)."""
    parts = []
    if checkpoint.get("epoch") is not None:
        parts.append(f"epoch={checkpoint['epoch']}")
    val_result = checkpoint.get("val_result")
    if isinstance(val_result, (int, float)):
        parts.append(f"val_result={val_result:.1f}")
    return ", ".join(parts)


def state_dict_differences(expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor]
                           ) -> Tuple[List[str], List[str], List[str]]:
    """Keys the model has and the file lacks, keys the file has and the model lacks, and
    ``key: file (shape) vs model (shape)`` for keys in both with different shapes."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in given and tuple(given[k].shape) != tuple(expected[k].shape)
    ]
    return missing, unexpected, shapes


def load_state_dict_strictly(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str, hint: str = "") -> None:
    """``model.load_state_dict(state_dict)`` after checking that keys and shapes match exactly;
    otherwise a ``StateDictMismatchError`` naming ``source``, every difference and ``hint``."""
    state_dict = OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())
    missing, unexpected, shapes = state_dict_differences(model.state_dict(), state_dict)
    if missing or unexpected or shapes:
        lines = [f"{source} does not match the model it is loaded into ({type(model).__name__}):"]
        if missing:
            lines.append(f"  missing keys (in the model, not in the file): {', '.join(missing)}")
        if unexpected:
            lines.append(f"  unexpected keys (in the file, not in the model): {', '.join(unexpected)}")
        if shapes:
            lines.append(f"  shape mismatches: {'; '.join(shapes)}")
        if hint:
            lines.append(hint)
        raise StateDictMismatchError("\n".join(lines))
    model.load_state_dict(state_dict)
