"""Which CLIP a run uses, as config-style keys for the run fingerprint: the architecture of its
weights, its activation and the SHA-256 of its weights file."""
import os
from typing import Dict

from . import loader
from .architecture import architecture_name
from .weights_cache import file_sha256

QUICK_GELU = "quick_gelu"  # OpenAI's activation, the one every CLIP built by load_clip uses


def backbone_identity(name: str, path: str) -> Dict[str, str]:
    """``MODEL.BACKBONE.ARCH``, ``.ACTIVATION`` and ``.SHA256`` of the CLIP that ``load_clip(name, path)``
    loads. Nothing is downloaded and a file is read at most once per version of it (``weights_cache``).

    - ``path`` given: the SHA-256 of that file and its architecture: one of ``available_backbones()``
      when the file has exactly its facts, else the facts in words (so an empty ``name`` records the
      file's architecture);
    - ``toy``: the SHA-256 of the shipped file; ``toy``;
    - an OpenAI name: known without its file, which need not be downloaded yet: the SHA-256 in OpenAI's
      URL (the only file clip accepts for the name, cached or downloaded, has it) and the name.

    ValueError for a name ``load_clip`` refuses, FileNotFoundError for a missing weights file.
    """
    loader.check_backbone_name(name, path)
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
