"""Load OpenAI's CLIP the way CoOp does: weights from a JIT archive or a state dict, rebuilt as a
plain ``CLIP`` by OpenAI's ``build_model`` (fp16 weights, as OpenAI ships them).

OpenAI's package is used through ``mutual_prompt.clip.openai``, never as ``clip``: a host repository's
own ``clip/`` (MaPLe's ``build_model`` takes a second argument) neither replaces it nor is touched.

Where the weights come from, in order:
- ``path`` (``MODEL.BACKBONE.PATH``): a local OpenAI JIT archive or a ``torch.save``-d state dict;
- ``name == "toy"``: the tiny CLIP shipped with the toy world;
- an OpenAI name (``openai.available_models()``): the file in clip's download cache, downloaded there
  by ``clip`` when it is missing and the machine is online.
"""
import os
import pickle
import zipfile
from typing import Dict, List, Union

import torch

from ..checkpoint_loading import load_error_reason
from ..toy import TINY_CLIP_PATH
from . import openai
from .jit_archive import read_jit_state_dict
from .openai.model import CLIP, build_model

TOY_NAME = "toy"
CLIP_CACHE_DIR = os.path.expanduser("~/.cache/clip")

StateDict = Dict[str, torch.Tensor]


def available_backbones() -> List[str]:
    """Every name ``load_clip`` accepts without a path."""
    return openai.available_models() + [TOY_NAME]


def load_clip(name: str, path: str = "", device: Union[str, torch.device] = "cpu", download_root: str = "") -> CLIP:
    """A CLIP model in eval mode on ``device``.

    On the CPU the model is float32; elsewhere it keeps ``build_model``'s fp16 weights, as in CoOp.
    The toy CLIP is always float32. ``download_root`` replaces clip's cache folder (``~/.cache/clip``).
    """
    if path:
        state_dict = read_clip_weights(path)
        source = path
    elif name == TOY_NAME:
        state_dict = read_toy_weights()
        source = TINY_CLIP_PATH
    elif name in openai.available_models():
        source = cached_weights_file(name, download_root or CLIP_CACHE_DIR)
        state_dict = read_clip_weights(source)
    else:
        raise ValueError(
            f"Unknown CLIP backbone MODEL.BACKBONE.NAME={name!r}; expected one of {available_backbones()}, "
            "or a weights file in MODEL.BACKBONE.PATH"
        )

    model = build_clip(state_dict, source)
    device = torch.device(device)
    if device.type == "cpu" or (name == TOY_NAME and not path):
        model.float()
    return model.to(device).eval()


def build_clip(state_dict: StateDict, source: str) -> CLIP:
    """OpenAI's ``build_model`` with an error that names the file when the keys are not CLIP's."""
    try:
        return build_model(dict(state_dict))
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as e:
        raise ValueError(
            f"{source} does not hold OpenAI CLIP weights that OpenAI's build_model can rebuild "
            f"({type(e).__name__}: {e})"
        ) from e


def read_clip_weights(path: str) -> StateDict:
    """The state dict in an OpenAI JIT archive, or in a file saved with ``torch.save(state_dict)``.

    JIT archives are read as data (``read_jit_state_dict``: their tensors, never their TorchScript
    code); state dicts with ``weights_only=True``. Neither runs code from the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP weights file not found: {path} (MODEL.BACKBONE.PATH or clip's cache)")
    if is_torchscript_archive(path):
        try:
            return read_jit_state_dict(path)
        except (ValueError, KeyError, pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"Cannot read the OpenAI JIT archive {path} ({type(e).__name__}: {e})") from e
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(
            f"Cannot read CLIP weights from {path} (MODEL.BACKBONE.PATH): it is neither an OpenAI JIT archive "
            f"nor a state dict of tensors saved with torch.save ({load_error_reason(e)})"
        ) from e
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ValueError(
            f"{path} holds a {type(state_dict).__name__}, expected a flat state dict of CLIP's tensors "
            "(name -> tensor) or an OpenAI JIT archive"
        )
    return state_dict


def is_torchscript_archive(path: str) -> bool:
    """A TorchScript zip holds ``<name>/constants.pkl``, which ``torch.save`` never writes."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def read_toy_weights() -> StateDict:
    if not os.path.isfile(TINY_CLIP_PATH):
        raise FileNotFoundError(
            f"The toy CLIP checkpoint {TINY_CLIP_PATH} is missing; regenerate it with "
            f"`python -m mutual_prompt.toy.pretrain --output {TINY_CLIP_PATH}`"
        )
    return read_clip_weights(TINY_CLIP_PATH)


def cached_weights_file(name: str, download_root: str) -> str:
    """The path of OpenAI's weights for ``name`` in ``download_root``, downloading them there if needed."""
    url = openai.clip._MODELS[name]
    target = os.path.join(download_root, os.path.basename(url))
    try:
        return openai.clip._download(url, download_root)
    except (OSError, RuntimeError, ValueError) as e:
        raise FileNotFoundError(
            f"Could not get the CLIP weights for {name!r}: looked for {target} and could not download "
            f"{url} ({type(e).__name__}: {e}). Without internet access, put that file at {target}, or "
            "set MODEL.BACKBONE.PATH to a local copy of it (an OpenAI JIT archive or a state dict)."
        ) from e
