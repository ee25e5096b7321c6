"""Checkpoints in Dassl's layout: writing, reading, loading into models, and resuming from them.

Host-independent: the built-in runtime saves, resumes and loads through this module, and our trainers
load, repair pointers and restore the best validation result through it under real Dassl too.

``<dir>/<model>/model.pth.tar-<epoch>`` (or ``model-best.pth.tar``) holds ``state_dict``, ``epoch``,
``optimizer``, ``scheduler`` and ``val_result``; the built-in runtime adds ``rng_state`` (so that a
resumed run continues exactly) and ``best_result``/``best_epoch``. ``<dir>/<model>/checkpoint`` (the
pointer) names the newest file. Files are written atomically and read by ``load_torch_file``, the
package's only ``torch.load``, with ``weights_only=True`` unless a caller trusts the file explicitly.
A checkpoint that does not match the model it is loaded into is an error that names the missing and
unexpected keys and the shape mismatches: loading with ``strict=False`` would silently leave the
unmatched parts untrained. For a ``MutualPromptCLIP.prompt_learner`` it also names the
``TRAINER.MUTUAL_PROMPT.*`` keys that its keys and shapes (``ctx``, ``ftp.*``, ``tvp.*``) say differ.
"""
import math
import os
import random
import re
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from ..files import atomic_path, mkdir_if_missing

BEST_MODEL_FILE = "model-best.pth.tar"
EPOCH_MODEL_PREFIX = "model.pth.tar-"
POINTER_FILE = "checkpoint"
EPOCH_CHECKPOINT = re.compile("^" + re.escape(EPOCH_MODEL_PREFIX) + r"(\d+)$")
MUTUAL_PROMPT_KEYS = "TRAINER.MUTUAL_PROMPT."
COOP_ONLY_KEYS = ("token_prefix", "token_suffix")  # CoOp's class-name buffers in its prompt_learner
MODULE_PREFIX = "module."  # what DataParallel-style wrappers put before every key
WEIGHTS_ONLY_FAILURE = "Weights only load failed"  # how torch.load(weights_only=True) starts its refusal
TRUST_HINT = (
    "Files written by CoOp's or CoCoOp's trainers pickle Python objects (the learning-rate scheduler) and "
    "cannot be read this way; if you trust the file, convert it once with "
    "`python -m mutual_prompt.convert from-coop --trust {path} OUT_DIR`"
)

StateDict = Mapping[str, torch.Tensor]
ConfigHint = Callable[[StateDict, StateDict], str]


class StateDictMismatchError(ValueError):
    """A checkpoint's tensors do not match the model's: missing, unexpected or differently shaped keys."""


# Reading and writing files


def load_torch_file(path: str, trusted_pickle_module: Optional[Any] = None) -> Any:
    """What ``torch.save`` wrote to ``path``, on the CPU.

    By default with ``weights_only=True``: tensors, containers and primitives only, and nothing in the
    file runs. ``trusted_pickle_module`` (a module-like object with ``Unpickler`` and ``load``) unpickles
    the file fully with it instead, which can run code from the file: only for files the user trusts
    (``python -m mutual_prompt.convert from-coop --trust``).
    """
    return torch.load(path, map_location="cpu", weights_only=trusted_pickle_module is None,
                      pickle_module=trusted_pickle_module)


def write_torch_file(obj: Any, path: str) -> None:
    """``torch.save(obj)`` to ``path``, atomically: a crash leaves the previous file or none."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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


def read_checkpoint(path: str, trusted_pickle_module: Optional[Any] = None) -> Dict[str, Any]:
    """A Dassl-layout checkpoint dict (with a ``state_dict`` entry), read by ``load_torch_file``;
    ``trusted_pickle_module`` is passed on to it."""
    try:
        checkpoint = load_torch_file(path, trusted_pickle_module)
    except Exception as e:
        if trusted_pickle_module is not None:
            raise ValueError(f"Cannot read {path} as a torch checkpoint ({type(e).__name__}: {e})") from e
        raise ValueError(
            f"Cannot read the checkpoint {path} with torch.load(weights_only=True) ({load_error_reason(e)}). "
            + TRUST_HINT.format(path=path)
        ) from e
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise ValueError(f"{path} is not a checkpoint in Dassl's layout: expected a dict with a 'state_dict' entry")
    return checkpoint


def load_checkpoint(fpath: str) -> Any:
    """Dassl's ``load_checkpoint``: what ``fpath`` holds (a checkpoint dict or a bare state dict)."""
    if not fpath:
        raise ValueError("Checkpoint path is empty")
    if not os.path.exists(fpath):
        raise FileNotFoundError(f"No checkpoint found at {fpath}")
    try:
        return load_torch_file(fpath)
    except Exception as e:
        raise RuntimeError(f"Cannot read checkpoint {fpath}: {e}") from e


def save_checkpoint(state: Dict[str, Any], save_dir: str, is_best: bool = False,
                    remove_module_from_keys: bool = True, model_name: str = "") -> str:
    """Dassl's ``save_checkpoint``: ``state`` to ``<save_dir>/<model_name>`` (``model.pth.tar-<epoch>``
    without a name), then the pointer to it, then ``model-best.pth.tar`` with ``is_best``; every file
    written atomically. Returns the path written first."""
    mkdir_if_missing(save_dir)
    if remove_module_from_keys:
        state = dict(state, state_dict=strip_module_prefix(state["state_dict"]))
    name = model_name or f"{EPOCH_MODEL_PREFIX}{state['epoch']}"
    fpath = os.path.join(save_dir, name)
    write_torch_file(state, fpath)
    write_pointer(save_dir, name)
    print(f"Checkpoint saved to {fpath}")
    if is_best:
        best = os.path.join(save_dir, BEST_MODEL_FILE)
        write_torch_file(state, best)
        print(f'Best checkpoint saved to "{best}"')
    return fpath


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


# Loading weights into models


def strip_module_prefix(state_dict: StateDict) -> "OrderedDict[str, torch.Tensor]":
    """``state_dict`` with the ``module.`` that a DataParallel-style wrapper puts before a key removed."""
    return OrderedDict((k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k, v) for k, v in state_dict.items())


def unwrapped(model: nn.Module) -> nn.Module:
    """``model`` without a DataParallel-style ``.module`` wrapper."""
    return model.module if hasattr(model, "module") else model


def state_dict_differences(expected: StateDict, given: StateDict) -> Tuple[List[str], List[str], List[str]]:
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


def load_state_dict_strictly(model: nn.Module, state_dict: StateDict, source: str, hint: str = "") -> None:
    """``model.load_state_dict(state_dict)`` after checking that keys and shapes match exactly;
    otherwise a ``StateDictMismatchError`` naming ``source``, every difference and ``hint``."""
    state_dict = strip_module_prefix(state_dict)
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


def load_trained_models(models: Mapping[str, nn.Module], directory: str, epoch: Optional[int] = None,
                        config_hint: Optional[ConfigHint] = None) -> None:
    """A trainer's ``load_model``: each model from ``<directory>/<name>/model.pth.tar-<epoch>`` (else
    ``model-best.pth.tar``), read with ``weights_only=True``, its epoch and val_result printed, loaded
    strictly. ``config_hint(checkpoint state, model state)`` says, on a mismatch, which config keys
    probably differ from the run that wrote the file."""
    for name, model in models.items():
        path = model_checkpoint_path(directory, name, epoch)
        checkpoint = read_checkpoint(path)
        print(f"Load {path} to {name} ({checkpoint_summary(checkpoint)})")
        model = unwrapped(model)
        hint = config_hint(checkpoint["state_dict"], model.state_dict()) if config_hint else ""
        load_state_dict_strictly(model, checkpoint["state_dict"], path, hint)


def load_pretrained_weights(model: nn.Module, weight_path: str) -> None:
    """Dassl's ``load_pretrained_weights``: the tensors of ``weight_path`` whose names and shapes match
    ``model`` are loaded, the rest reported."""
    checkpoint = load_checkpoint(weight_path)
    state_dict = checkpoint.get("state_dict", checkpoint)
    model_dict = model.state_dict()
    matched, discarded = OrderedDict(), []
    for k, v in strip_module_prefix(state_dict).items():
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


# Resuming a run


def rng_state() -> Dict[str, Any]:
    """Python, NumPy and torch generator states, in tensors/lists that ``weights_only`` loads."""
    np_state = np.random.get_state()
    return {
        "python": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore the generator states that ``rng_state`` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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


def resume_from_checkpoint(fdir: str, model: nn.Module, optimizer=None, scheduler=None) -> int:
    """Dassl's ``resume_from_checkpoint``: load the checkpoint that ``fdir/checkpoint`` names into the
    model, optimizer and scheduler (and the generators, when it holds their states); return its epoch,
    the epoch to start from."""
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


def resume_models(directory: str, models: Mapping[str, nn.Module], optims: Mapping[str, Any],
                  scheds: Mapping[str, Any]) -> int:
    """A trainer's ``resume_model_if_exist``, under either host: each model, with its optimizer and
    scheduler, from the checkpoint its ``<directory>/<name>/checkpoint`` pointer names, read with
    ``weights_only=True``; returns the epoch to start from (0, training from scratch, when a pointer
    is missing). Dassl 0.6.3's own resume reads with ``torch.load``'s default, which unpickles
    anything before torch 2.6 and refuses a pickled scheduler from torch 2.6 on."""
    names = list(models)
    if not names or not all(os.path.exists(os.path.join(directory, n, POINTER_FILE)) for n in names):
        print("No checkpoint found, train from scratch")
        return 0
    print(f'Found checkpoint at "{directory}" (will resume training)')
    start_epoch = 0
    for name in names:
        start_epoch = resume_from_checkpoint(os.path.join(directory, name), unwrapped(models[name]),
                                             optims.get(name), scheds.get(name))
    return start_epoch


def best_val_so_far(directory: str, names: Sequence[str]) -> Tuple[float, Optional[int]]:
    """(best val result, its 1-based epoch) recorded for the checkpoints under ``directory``, so that
    with ``TEST.FINAL_MODEL best_val`` a resumed run's later, worse epoch does not replace ``model-best``.

    The resumed checkpoint's own ``best_result``/``best_epoch`` when it has them (the built-in
    runtime writes them); else ``model-best.pth.tar``'s ``val_result`` and ``epoch`` (what Dassl and
    CoOp write); else (-inf, None): no best yet.
    """
    for name in names:
        newest = read_pointer(os.path.join(directory, name))
        path = os.path.join(directory, name, newest)
        if newest and os.path.isfile(path):
            checkpoint = read_checkpoint(path)
            if checkpoint.get("best_result") is not None:
                return float(checkpoint["best_result"]), checkpoint.get("best_epoch")
    for name in names:
        path = os.path.join(directory, name, BEST_MODEL_FILE)
        if os.path.isfile(path):
            checkpoint = read_checkpoint(path)
            if checkpoint.get("val_result") is not None:
                return float(checkpoint["val_result"]), checkpoint.get("epoch")
    return -math.inf, None


def _epoch_checkpoints(model_dir: str) -> set:
    return {int(m.group(1)) for m in map(EPOCH_CHECKPOINT.match, os.listdir(model_dir)) if m}


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

    A missing or empty pointer, an unreadable newest checkpoint, or models whose pointers disagree (a
    run stopped between writing a checkpoint and its pointer) moves every pointer to the newest epoch
    whose checkpoints are intact for all models. Raises ``RuntimeError`` when there is none.
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


# What a MutualPrompt prompt_learner checkpoint says about the config that wrote it


def describe_prompt_learner(state_dict: StateDict) -> Dict[str, Any]:
    """The settings a state dict's keys and shapes imply, by the config key that decides each."""
    described: Dict[str, Any] = {}
    ctx = state_dict.get("ctx")
    if ctx is not None and ctx.dim() == 2:
        described[MUTUAL_PROMPT_KEYS + "N_CTX / CTX_INIT (context tokens)"] = ctx.shape[0]
        described["MODEL.BACKBONE.NAME (text width)"] = ctx.shape[1]
    linear2 = state_dict.get("ftp.meta_net.linear2.weight")
    if linear2 is None:
        described[MUTUAL_PROMPT_KEYS + "FTP.MODE"] = "none"
    elif ctx is not None and linear2.shape[0] == ctx.shape[-1]:
        described[MUTUAL_PROMPT_KEYS + "FTP.MODE"] = "shared"
    elif ctx is not None and linear2.shape[0] == ctx.numel():
        described[MUTUAL_PROMPT_KEYS + "FTP.MODE"] = "fine"
    tokens = state_dict.get("tvp.base_tokens")
    described[MUTUAL_PROMPT_KEYS + "TVP.ENABLED"] = tokens is not None
    if tokens is not None and tokens.dim() == 3:
        described[MUTUAL_PROMPT_KEYS + "TVP.DEPTH"] = tokens.shape[0]
        described[MUTUAL_PROMPT_KEYS + "TVP.N_TOKENS"] = tokens.shape[1]
        described["MODEL.BACKBONE.NAME (image width)"] = tokens.shape[2]
    return described


def config_difference_hint(checkpoint_state: StateDict, model_state: StateDict) -> str:
    """The config keys that probably differ between the run that wrote ``checkpoint_state`` and the
    model built now, one line each; a CoOp/CoCoOp checkpoint is named as such."""
    if any(k.startswith("meta_net.") or k in COOP_ONLY_KEYS for k in checkpoint_state):
        return ("This is a CoOp/CoCoOp checkpoint (meta_net.*, token_prefix, token_suffix): convert it with "
                "`python -m mutual_prompt.convert from-coop` and evaluate it with FTP.MODE shared (CoCoOp) or none "
                "(CoOp) and TVP.ENABLED False.")
    saved, built = describe_prompt_learner(checkpoint_state), describe_prompt_learner(model_state)
    lines = [f"  {key}: checkpoint {saved.get(key, '?')}, config {built.get(key, '?')}"
             for key in dict.fromkeys([*built, *saved]) if saved.get(key) != built.get(key)]
    if not lines:
        return ""
    return "Config keys that probably differ from the run that wrote the checkpoint:\n" + "\n".join(lines)
