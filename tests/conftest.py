"""Shared test set-up: the repository root on sys.path (``trainers``/``datasets`` are imported from
there, as in CoOp), this folder too (the shared code is the package ``helpers``), the built-in
backend unless a test asks for Dassl explicitly, and the fixtures that several test modules use."""
import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
for path in (TESTS_DIR, REPO_ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

os.environ.setdefault("MUTUAL_PROMPT_BACKEND", "builtin")

import torch  # noqa: E402  (after the paths and the backend choice above)

from helpers.clip_weights import save_state_dict, tiny_clip  # noqa: E402
from helpers.dataset_trees import CALTECH  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> str:
    return REPO_ROOT


@pytest.fixture(scope="module")
def tiny_clip_file(tmp_path_factory) -> str:
    """The default ``tiny_clip()`` (ViT, patch 8, 32 px, one layer per tower) in an fp16 state dict."""
    return save_state_dict(tiny_clip(), tmp_path_factory.mktemp("clip") / "tiny_clip.pt")


@pytest.fixture(scope="module")
def vit_b16_shaped_file(tmp_path_factory) -> str:
    """A ViT-B/16 of other sizes in an fp16 state dict: patch 16 and 224 px like ViT-B/16, one 64-wide layer."""
    return save_state_dict(tiny_clip(224, 16), tmp_path_factory.mktemp("weights") / "vit_b16_shaped.pt")


@pytest.fixture(scope="module")
def caltech_root(tmp_path_factory) -> str:
    """A generated Caltech101 tree: 5 classes, 2 identical test images each."""
    root = str(tmp_path_factory.mktemp("data"))
    CALTECH.build(root)
    return root


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    """Three random 32x32 RGB images, the same in every module."""
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
