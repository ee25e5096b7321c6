"""Which CLIP a run uses, as config-style keys for the run fingerprint: the architecture of its
weights, its activation and the SHA-256 of its weights file."""
import os
from typing import Dict

from . import loader, open_clip_backbone
from .architecture import architecture_name
from .weights_cache import file_sha256

QUICK_GELU = open_clip_backbone.QUICK_GELU  # OpenAI's activation, the one of every CLIP but open_clip's GELU models


def backbone_identity(name: str, path: str) -> Dict[str, str]:
    """``MODEL.BACKBONE.ARCH``, ``.ACTIVATION`` and ``.SHA256`` of the CLIP that ``load_clip(name, path)``
    loads. Nothing is downloaded and a file is read at most once per version of it (``weights_cache``).

    - ``path`` given: the SHA-256 of that file and its architecture: one of ``available_backbones()``
      when the file has exactly its facts, else the facts in words (so an empty ``name`` records the
      file's architecture);
    - ``toy``: the SHA-256 of the shipped file; ``toy``;
    - an OpenAI name: known without its file, which need not be downloaded yet: the SHA-256 in OpenAI's
      URL (the only file clip accepts for the name, cached or downloaded, has it) and the name;
    - ``open_clip:<model>[/<tag>]``: ``open_clip:<model>``, the model's activation, and the SHA-256 of
      ``path`` or of the tag's file in open_clip's cache (FileNotFoundError when it is not there yet).

    ValueError for a name ``load_clip`` refuses, FileNotFoundError for a missing weights file.
    """
    loader.check_backbone_name(name, path)
    if open_clip_backbone.is_open_clip_name(name):
        return open_clip_identity(name, path)
    if path:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"CLIP weights file not found: {path} (MODEL.BACKBONE.PATH)")
        architecture = architecture_name(loader.file_architecture(path), loader.known_architectures())
        sha256 = file_sha256(path)
    elif name == loader.TOY_NAME:
        architecture, sha256 = loader.TOY_NAME, file_sha256(loader.toy_weights_file())
    else:
        architecture, sha256 = name, loader.openai_sha256(name)
    return {"MODEL.BACKBONE.ARCH": architecture, "MODEL.BACKBONE.ACTIVATION": QUICK_GELU,
            "MODEL.BACKBONE.SHA256": sha256}


def open_clip_identity(name: str, path: str) -> Dict[str, str]:
    parsed = open_clip_backbone.parse_name(name)
    config = open_clip_backbone.model_config(parsed.model)
    open_clip_backbone.check_supported(parsed, config)
    activation = open_clip_backbone.activation(parsed, config)
    if not path and not parsed.tag:
        raise ValueError(f"{name} names no weights: no MODEL.BACKBONE.PATH and no pretrained tag")
    source = path or open_clip_backbone.cached_file(parsed)
    if not source or not os.path.isfile(source):
        where = path or "open_clip's cache (not downloaded yet)"
        raise FileNotFoundError(f"The weights of {name} are not in {where}")
    return {"MODEL.BACKBONE.ARCH": str(open_clip_backbone.OpenClipName(parsed.model)),
            "MODEL.BACKBONE.ACTIVATION": activation, "MODEL.BACKBONE.SHA256": file_sha256(source)}
