"""Checkpoints in Dassl's layout, written atomically and read with ``weights_only=True``.

``<dir>/model.pth.tar-<epoch>`` (or ``model-best.pth.tar``) holds ``state_dict``, ``epoch``,
``optimizer``, ``scheduler`` and ``val_result``, plus ``rng_state`` so that a resumed run continues
exactly; ``<dir>/checkpoint`` names the newest file.
"""
import os
import random
from collections import OrderedDict
from typing import Any, Dict

import numpy as np
import torch
import torch.nn as nn

from ..run.checkpoint_loading import BEST_MODEL_FILE, EPOCH_MODEL_PREFIX
from ..files import atomic_path, mkdir_if_missing
from ..run.resume import POINTER_FILE, read_pointer, write_pointer


def save_checkpoint(state: Dict[str, Any], save_dir: str, is_best: bool = False,
                    remove_module_from_keys: bool = True, model_name: str = "") -> str:
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state = dict(state, state_dict=_strip_module_prefix(state["state_dict"]))
    name = model_name or f"{EPOCH_MODEL_PREFIX}{state['epoch']}"
    fpath = os.path.join(save_dir, name)
    with atomic_path(fpath) as tmp:
        torch.save(state, tmp)
    write_pointer(save_dir, name)
    print(f"Checkpoint saved to {fpath}")
    if is_best:
        best = os.path.join(save_dir, BEST_MODEL_FILE)
        with atomic_path(best) as tmp:
            torch.save(state, tmp)
        print(f'Best checkpoint saved to "{best}"')
    return fpath


def _strip_module_prefix(state_dict: Dict[str, torch.Tensor]) -> "OrderedDict[str, torch.Tensor]":
    return OrderedDict((k[7:] if k.startswith("module.") else k, v) for k, v in state_dict.items())


def load_checkpoint(fpath: str) -> Dict[str, Any]:
    if not fpath:
        raise ValueError("Checkpoint path is empty")
    if not os.path.exists(fpath):
        raise FileNotFoundError(f"No checkpoint found at {fpath}")
    try:
        return torch.load(fpath, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RuntimeError(f"Cannot read checkpoint {fpath}: {e}") from e


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch generator states, in tensors/lists that ``weights_only`` loads."""
    np_state = np.random.get_state()
    return {
        "python": list(_to_lists(random.getstate())),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _to_lists(state):
    return [list(x) if isinstance(x, tuple) else x for x in state]


def set_rng_state(state: Dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> int:
    """Load the newest checkpoint named in ``fdir/checkpoint``; return the epoch to start from."""
    name = read_pointer(fdir)
    if not name:
        pointer = os.path.join(fdir, POINTER_FILE)
        raise RuntimeError(f"{pointer} is {'empty' if os.path.isfile(pointer) else 'missing'}: it should name the "
                           "newest checkpoint file (e.g. model.pth.tar-5)")
    fpath = os.path.join(fdir, name)
    print(f'Loading checkpoint from "{fpath}"')
    checkpoint = load_checkpoint(fpath)
    model.load_state_dict(checkpoint["state_dict"])
    print("Loaded model weights")
    if optimizer is not None and checkpoint.get("optimizer"):
        optimizer.load_state_dict(checkpoint["optimizer"])
        print("Loaded optimizer")
    if scheduler is not None and checkpoint.get("scheduler"):
        scheduler.load_state_dict(checkpoint["scheduler"])
        print("Loaded scheduler")
    if checkpoint.get("rng_state"):
        set_rng_state(checkpoint["rng_state"])
    start_epoch = checkpoint["epoch"]
    print(f"Previous epoch: {start_epoch}")
    return start_epoch


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Load the tensors of ``weight_path`` whose names and shapes match ``model``; report the rest."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in _strip_module_prefix(state_dict).items():
        if k in model_dict and model_dict[k].size() == v.size():
            matched[k] = v
        else:
            discarded.append(k)
    if not matched:
        raise ValueError(f"None of the weights in {weight_path} match the model's parameter names and shapes")
    model_dict.update(matched)
    model.load_state_dict(model_dict)
    print(f'Successfully loaded pretrained weights from "{weight_path}"')
    if discarded:
        print(f"** The following layers are discarded due to unmatched keys or layer size: {discarded}")
