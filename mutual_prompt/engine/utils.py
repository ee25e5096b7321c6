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
    """Open an image as RGB; any failure names the file."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image file not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:
        raise IOError(f"Cannot read image {path}: {e}") from e


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
