"""Small random-weight open_clip models under names of their own, their weights in open_clip's two
file formats, and train.py run with those names known to open_clip.

open_clip finds a model's config by name; the configs here are written as JSON files into a folder
that ``register`` hands to ``open_clip.add_model_config`` (in this process, or in train.py's).
"""
import json
import os
import subprocess
import sys
from typing import Dict

import torch

from .runs import REPO_ROOT

TEXT = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2}
CONFIGS: Dict[str, dict] = {
    # open_clip's ViT and TextTransformer, GELU (like ViT-B-16) and QuickGELU (like ViT-B-16-quickgelu); the
    # first with heads 32 wide (OpenAI's CLIP class builds 64-wide ones), as ViT-H-14's are 80 wide
    "mp-test-vit": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                                    "patch_size": 8}, "text_cfg": TEXT},
    "mp-test-vit-quickgelu": {"embed_dim": 32, "quick_gelu": True,
                              "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
                              "text_cfg": TEXT},
    # the text tower as open_clip's CustomTextCLIP holds it (keys text.*), as EVA and MobileCLIP configs do
    "mp-test-vit-custom-text": {"embed_dim": 32, "custom_text": True,
                                "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8},
                                "text_cfg": TEXT},
    # image towers that are not open_clip's ViT: ModifiedResNet, and a timm ConvNeXt
    "mp-test-rn": {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                                                   "patch_size": None}, "text_cfg": TEXT},
    "mp-test-convnext": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "timm_model_name": "convnext_atto",
                                                         "timm_model_pretrained": False, "timm_pool": "",
                                                         "timm_proj": "linear"}, "text_cfg": TEXT},
    # a feature built by open_clip but not here
    "mp-test-layer-scale": {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 1, "width": 64,
                                                            "patch_size": 8, "ls_init_value": 1e-5},
                            "text_cfg": TEXT},
}


def write_configs(folder) -> str:
    """The configs as ``<name>.json`` files in ``folder``; returns it as a string."""
    os.makedirs(folder, exist_ok=True)
    for name, config in CONFIGS.items():
        with open(os.path.join(folder, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
    return str(folder)


def register(folder) -> None:
    import open_clip
    open_clip.add_model_config(write_configs(folder))


def random_model(name: str, seed: int = 0, perturb: float = 0.02) -> torch.nn.Module:
    """open_clip's model ``name`` in eval mode, fp32, each weight moved by Gaussian noise of ``perturb``
    (open_clip's init leaves biases at zero and LayerNorm weights at one: now every weight matters)."""
    import open_clip
    torch.manual_seed(seed)
    model = open_clip.create_model(name, pretrained=None)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * perturb)
    return model.eval()


def save_bin(model: torch.nn.Module, path) -> str:
    """``model``'s state dict as open_clip saves it (``open_clip_pytorch_model.bin``)."""
    torch.save(model.state_dict(), str(path))
    return str(path)


def save_safetensors(model: torch.nn.Module, path) -> str:
    from safetensors.torch import save_file
    save_file({key: value.contiguous() for key, value in model.state_dict().items()}, str(path))
    return str(path)


def train_py(cwd, config_folder: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """train.py with ``args`` in a fresh interpreter that first registers the configs in ``config_folder``."""
    code = ("import os, sys, runpy, open_clip; open_clip.add_model_config(sys.argv[1]); "
            "sys.argv = sys.argv[2:]; sys.path.insert(0, os.path.dirname(sys.argv[0])); "
            "runpy.run_path(sys.argv[0], run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code, config_folder, os.path.join(REPO_ROOT, "train.py"), *args],
                          cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
