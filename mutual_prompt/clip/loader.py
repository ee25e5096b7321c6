"""Load OpenAI's CLIP the way CoOp does: weights from a JIT archive or a state dict, rebuilt as a
plain ``CLIP`` by OpenAI's ``build_model`` (fp16 weights, as OpenAI ships them).

OpenAI's package is used through ``mutual_prompt.clip.openai``, never as ``clip``: a host repository's
own ``clip/`` (MaPLe's ``build_model`` takes a second argument) neither replaces it nor is touched.

Where the weights come from, in order:
- ``path`` (``MODEL.BACKBONE.PATH``): a local OpenAI JIT archive or a ``torch.save``-d state dict;
- ``name == "toy"``: the tiny CLIP shipped with the toy world;
- an OpenAI name (``openai.available_models()``): the file in clip's download cache, downloaded there
  by ``clip`` when it is missing and the machine is online (clip checks its SHA-256 against the one in
  OpenAI's URL);
- ``open_clip:<model>[/<tag>]``: ``path``, else the tag's file in open_clip's cache, built by
  ``open_clip_backbone`` (which imports open_clip only then).

A file in ``path`` under an OpenAI name is checked against the name before anything is built: the
name must be one of ``available_backbones()`` and stand for the file's architecture (``architecture.py``), or be empty,
which takes the file's architecture. Every CLIP read under such a name uses OpenAI's QuickGELU; a
file that is not one of OpenAI's own (by SHA-256) read under another name than ``toy`` says so in one
line, since open_clip's GELU models have the same keys.
"""
import os
import pickle
import zipfile
from typing import Dict, List, Union

import torch

from ..run.checkpoints import load_error_reason, load_torch_file
from . import openai
from . import open_clip_backbone
from .architecture import (OPENAI_ARCHITECTURES, Architecture, architecture_name, architecture_of,
                           check_name_against_weights)
from .jit_archive import read_jit_state_dict
from .openai.model import CLIP, build_model, convert_weights
from .weights_cache import cached_fact, file_sha256

# The tiny CLIP trained on the toy world (MODEL.BACKBONE.NAME toy), shipped beside this module;
# ``python -m mutual_prompt.toy.pretrain`` writes it.
TINY_CLIP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny_clip.pt")

TOY_NAME = "toy"
CLIP_CACHE_DIR = os.path.expanduser("~/.cache/clip")

StateDict = Dict[str, torch.Tensor]


def available_backbones() -> List[str]:
    """Every name ``load_clip`` accepts (and, with a weights file, ``""``: the file's architecture), but
    ``open_clip:<model>[/<tag>]`` for open_clip's models."""
    return openai.available_models() + [TOY_NAME]


def load_clip(name: str, path: str = "", device: Union[str, torch.device] = "cpu", download_root: str = "") -> CLIP:
    """A CLIP model in eval mode on ``device``.

    On the CPU the model is float32; elsewhere it keeps ``build_model``'s fp16 weights, as in CoOp (an
    open_clip model is put in the same layout). The toy CLIP is always float32. ``download_root``
    replaces clip's cache folder (``~/.cache/clip``), or open_clip's for its tags.
    """
    check_backbone_name(name, path)
    device = torch.device(device)
    if open_clip_backbone.is_open_clip_name(name):
        model = load_open_clip(name, path, download_root)  # float32, as its weights usually are
        if device.type != "cpu":
            convert_weights(model)
        return model.to(device).eval()
    model = load_openai_clip(name, path, download_root)
    if device.type == "cpu" or (name == TOY_NAME and not path):
        model.float()
    return model.to(device).eval()


def load_open_clip(name: str, path: str, download_root: str) -> CLIP:
    """An open_clip model (``open_clip_backbone``) in float32, from ``path`` or its tag's file."""
    parsed = open_clip_backbone.parse_name(name)
    if not path and not parsed.tag:
        raise ValueError(f"MODEL.BACKBONE.NAME {name} needs its weights: set MODEL.BACKBONE.PATH to a local "
                         f"weights file (open_clip_pytorch_model.bin or .safetensors), or name a pretrained tag, "
                         f"{name}/<tag> (open_clip.list_pretrained_tags_by_model({parsed.model!r}))")
    open_clip_backbone.checked_config(parsed)  # before any file is read or downloaded
    source = path or open_clip_backbone.pretrained_file(parsed, download_root)
    return open_clip_backbone.build_open_clip(parsed, read_clip_weights(source), source)


def load_openai_clip(name: str, path: str, download_root: str) -> CLIP:
    """OpenAI's CLIP or the toy CLIP, rebuilt by OpenAI's ``build_model``."""
    if path:
        state_dict = read_clip_weights(path)
        check_weights_for_name(name, path, state_dict)
        source = path
    elif name == TOY_NAME:
        source = toy_weights_file()
        state_dict = read_clip_weights(source)
    else:
        source = cached_weights_file(name, download_root or CLIP_CACHE_DIR)
        state_dict = read_clip_weights(source)
    return build_clip(state_dict, source)


def check_backbone_name(name: str, path: str) -> None:
    """Raise unless ``name`` is one of ``available_backbones()``, ``open_clip:<model>[/<tag>]`` or empty
    with a weights file."""
    if name in available_backbones() or (path and not name):
        return
    if open_clip_backbone.is_open_clip_name(name):
        open_clip_backbone.parse_name(name)
        return
    if path:
        raise ValueError(
            f"Unknown CLIP backbone MODEL.BACKBONE.NAME={name!r} for MODEL.BACKBONE.PATH {path}; expected one of "
            f"{available_backbones()}, open_clip:<model> for open_clip's weights, or '' to take the file's "
            "architecture"
        )
    raise ValueError(
        f"Unknown CLIP backbone MODEL.BACKBONE.NAME={name!r}; expected one of {available_backbones()}, "
        "open_clip:<model>/<pretrained tag>, or a weights file in MODEL.BACKBONE.PATH"
    )


def check_weights_for_name(name: str, path: str, state_dict: StateDict) -> None:
    """Refuse weights that are another backbone than ``name``; print what an empty name takes, other
    sizes of the named backbone, and weights that are not OpenAI's own file."""
    held = weights_architecture(state_dict, path)
    known = known_architectures(require_toy=name == TOY_NAME)
    if name:
        check_name_against_weights(name, path, held, known)
    else:
        print(f"MODEL.BACKBONE.NAME is empty: the run takes the architecture of {path}: "
              f"{architecture_name(held, known)}")
    if name != TOY_NAME and not is_openai_file(path):
        print(quick_gelu_note(path))


def known_architectures(require_toy: bool = False) -> Dict[str, Architecture]:
    """OpenAI's backbones and, when its file is there (or ``require_toy``: else an error), the toy CLIP."""
    known = dict(OPENAI_ARCHITECTURES)
    if require_toy or os.path.isfile(TINY_CLIP_PATH):
        toy_file = toy_weights_file()
        known[TOY_NAME] = weights_architecture(read_clip_weights(toy_file), toy_file)
    return known


def weights_architecture(state_dict: StateDict, source: str) -> Architecture:
    try:
        return architecture_of(state_dict)
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise not_clip_weights(source, e) from e


def file_architecture(path: str) -> Architecture:
    """The architecture of the weights in ``path``, read once per version of the file."""
    return cached_fact(path, "architecture", lambda: weights_architecture(read_clip_weights(path), path).to_json(),
                       Architecture.from_json)


def openai_sha256(name: str) -> str:
    """The SHA-256 of OpenAI's file for ``name``: the folder of its download URL, as clip checks it."""
    return openai.clip._MODELS[name].split("/")[-2]


def is_openai_file(path: str) -> bool:
    """Whether ``path`` is one of OpenAI's released files (a JIT archive with one of their SHA-256s)."""
    return is_torchscript_archive(path) and file_sha256(path) in {openai_sha256(n) for n in openai.clip._MODELS}


def quick_gelu_note(path: str) -> str:
    kind = ("its SHA-256 is none of OpenAI's files" if is_torchscript_archive(path)
            else "a state dict, not OpenAI's JIT archive")
    return (f"Note: {path} is not one of OpenAI's CLIP files ({kind}); it is read with OpenAI's CLIP architecture "
            "and its QuickGELU activation. Weights trained with open_clip's GELU models (its model names without "
            "-quickgelu, e.g. the LAION-2B and DataComp open_clip_pytorch_model.bin) give different features under "
            "it; open_clip's own weights belong under MODEL.BACKBONE.NAME open_clip:<model> (docs/USAGE.md)")


def build_clip(state_dict: StateDict, source: str) -> CLIP:
    """OpenAI's ``build_model`` with an error that names the file when the keys are not CLIP's."""
    try:
        return build_model(dict(state_dict))
    except (KeyError, RuntimeError, ValueError, IndexError, TypeError) as e:
        raise not_clip_weights(source, e) from e


def not_clip_weights(source: str, error: Exception) -> ValueError:
    return ValueError(f"{source} does not hold OpenAI CLIP weights that OpenAI's build_model can rebuild "
                      f"({type(error).__name__}: {error})")


def read_clip_weights(path: str) -> StateDict:
    """The state dict in an OpenAI JIT archive, a ``.safetensors`` file, or a file saved with
    ``torch.save(state_dict)``.

    JIT archives are read as data (``read_jit_state_dict``: their tensors, never their TorchScript
    code); state dicts with ``weights_only=True``. None runs code from the file.
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"CLIP weights file not found: {path} (MODEL.BACKBONE.PATH or clip's cache)")
    if path.endswith(".safetensors"):
        return read_safetensors(path)
    if is_torchscript_archive(path):
        try:
            return read_jit_state_dict(path)
        except (ValueError, KeyError, pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile) as e:
            raise ValueError(f"Cannot read the OpenAI JIT archive {path} ({type(e).__name__}: {e})") from e
    try:
        state_dict = load_torch_file(path)
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


def read_safetensors(path: str) -> StateDict:
    try:
        from safetensors.torch import load_file
    except ImportError as e:
        raise ImportError(f"Reading {path} needs safetensors: pip install safetensors (it comes with "
                          f'pip install -e ".[open_clip]")') from e
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises its own error types for a damaged file
        raise ValueError(f"Cannot read {path} as a safetensors file ({type(e).__name__}: {e})") from e


def is_torchscript_archive(path: str) -> bool:
    """A TorchScript zip holds ``<name>/constants.pkl``, which ``torch.save`` never writes."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())


def toy_weights_file() -> str:
    """The toy CLIP's file; FileNotFoundError, saying how to make it, when it is missing."""
    if not os.path.isfile(TINY_CLIP_PATH):
        raise FileNotFoundError(
            f"The toy CLIP checkpoint {TINY_CLIP_PATH} is missing; regenerate it with "
            f"`python -m mutual_prompt.toy.pretrain --output {TINY_CLIP_PATH}`"
        )
    return TINY_CLIP_PATH


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
