"""Small file-system, JSON, seeding and environment helpers with Dassl's names and signatures."""
import errno
import json
import os
import random
import tempfile
from contextlib import contextmanager
from typing import Any, Iterator, List

import numpy as np
import torch
from PIL import Image


def mkdir_if_missing(dirname: str) -> None:
    if dirname and not os.path.exists(dirname):
        try:
            os.makedirs(dirname)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise


@contextmanager
def atomic_path(fpath: str) -> Iterator[str]:
    """Yield a temporary path beside ``fpath``; it replaces ``fpath`` only if the block succeeds.

    A crash while writing leaves the previous file intact instead of a truncated one.
    """
    directory = os.path.dirname(os.path.abspath(fpath))
    mkdir_if_missing(directory)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(fpath) + ".", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        yield tmp
        # mkstemp makes the file private (0600); give it the mode a plain open() would.
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, fpath)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_json(fpath: str) -> Any:
    try:
        with open(fpath, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{fpath} is not valid JSON: {e}") from e


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(fpath) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=4, separators=(",", ": "))


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


def listdir_nohidden(path: str, sort: bool = False) -> List[str]:
    """Entries of ``path`` not starting with a dot; ``sort`` gives a machine-independent order."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items
