"""Seeding, image reading and environment helpers with Dassl's names and signatures."""
import os
import random

import numpy as np
import torch
from PIL import Image


def set_random_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_image(path: str) -> Image.Image:
    """Open an image as 8-bit RGB (``to_rgb``); any failure names the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found: {path}")
    try:
        with Image.open(path) as img:
            return to_rgb(img)
    except Exception as e:
        raise IOError(f"Cannot read image {path}: {e}") from e


HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def to_rgb(img: Image.Image) -> Image.Image:
    """``img`` as 8-bit RGB.

    8-bit modes (1, L, LA, P, PA, RGB, RGBA, RGBX, CMYK, YCbCr, ...) are converted as Dassl and CoOp
    do, ``convert("RGB")`` (alpha dropped, CMYK by PIL's formula), so the pixels match theirs. PIL
    clips the high-bit-depth grey modes to 255 in that conversion (a 16-bit PNG turns white); they
    are scaled instead: 16-bit modes by 255/65535; 32-bit integer (I) and float (F) images by their
    value range: kept when within 0..255 (F: 0..1 is scaled by 255), scaled by 255/65535 when
    within 0..65535, else stretched from their minimum to their maximum.
    """
    if img.mode not in HIGH_BIT_DEPTH_MODES:
        return img.convert("RGB")
    values = np.nan_to_num(np.asarray(img, dtype=np.float64))
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        scaled = values * (255.0 / 65535.0)
    elif low >= 0 and high <= (1.0 if img.mode == "F" else 255.0):
        scaled = values * (255.0 if img.mode == "F" else 1.0)
    elif low >= 0 and high <= 255.0:
        scaled = values
    elif low >= 0 and high <= 65535.0:
        scaled = values * (255.0 / 65535.0)
    else:
        scaled = (values - low) * (255.0 / (high - low))
    grey = Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L")
    return grey.convert("RGB")


def collect_env_info() -> str:
    """Versions of Python, PyTorch and the devices, as printed at the start of a run."""
    from torch.utils.collect_env import get_pretty_env_info

    import PIL

    return get_pretty_env_info() + f"\n        Pillow ({PIL.__version__})"
