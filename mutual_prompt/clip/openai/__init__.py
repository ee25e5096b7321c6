"""OpenAI's CLIP package (PyPI ``clip-anytorch``), imported as ``mutual_prompt.clip.openai``.

CoOp-style repositories put their root first on ``sys.path``, and MaPLe, PromptSRC and others ship
their own modified ``clip/`` there (MaPLe's ``build_model`` takes a second argument), so ``import
clip`` may give the host's package. This package instead points its ``__path__`` at the folder of
the installed distribution: ``mutual_prompt.clip.openai.clip``, ``.model`` and ``.simple_tokenizer``
are OpenAI's modules under our name, whatever ``clip`` the host imports, and ``sys.modules["clip"]``
is never read or written.

OpenAI's ``clip.py`` imports ``pkg_resources``, which setuptools deprecates with a warning on every
import (setuptools < 81 is a dependency for that reason): that one known warning is silenced here.
"""
import importlib.metadata
import os
import warnings
from typing import List

DISTRIBUTIONS = ("clip-anytorch", "clip")  # PyPI's build first, then OpenAI's own setup.py name


def installed_clip_dir(distributions=DISTRIBUTIONS) -> str:
    """The ``clip/`` folder of the first installed distribution in ``distributions`` that has one."""
    looked: List[str] = []
    for name in distributions:
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            looked.append(f"{name}: not installed")
            continue
        folder = str(dist.locate_file("clip"))
        if os.path.isfile(os.path.join(folder, "model.py")) and os.path.isfile(os.path.join(folder, "clip.py")):
            return folder
        looked.append(f"{name} {dist.version}: no clip/model.py and clip/clip.py in {folder}")
    raise ImportError(
        "mutual_prompt needs OpenAI's CLIP package: `pip install clip-anytorch` (it is imported under a "
        f"private name, so a repository's own clip/ folder does not replace it). Looked for: {'; '.join(looked)}"
    )


__path__ = [installed_clip_dir()]

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    from . import clip, model  # noqa: E402
from .clip import available_models, tokenize  # noqa: E402

__all__ = ["clip", "model", "available_models", "tokenize"]
