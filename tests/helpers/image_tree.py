"""Generated image folders and ``Datum`` lists for tests.

``make_images(root, {"cat": 3, "dog": 2})`` writes ``root/cat/cat_000.jpg`` ... with a different
random picture in every file (deterministic for a given ``seed``); ``make_datums`` turns such paths
into labelled ``Datum`` objects.
"""
import os
from typing import List, Mapping, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

IMAGE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP"}


def make_images(root: str, counts: Mapping[str, int], size: Tuple[int, int] = (32, 32), ext: str = ".jpg",
                seed: int = 0) -> List[str]:
    """Write ``counts[c]`` RGB images of ``size`` (width, height) into ``root/<c>/`` for each class.

    Each class has its own base colour plus per-image noise. Returns the paths in the order of
    ``counts``, then by index.
    """
    if ext.lower() not in IMAGE_FORMATS:
        raise ValueError(f"ext must be one of {sorted(IMAGE_FORMATS)}, got {ext!r}")
    rng = np.random.default_rng(seed)
    width, height = size
    paths = []
    for classname, n in counts.items():
        folder = os.path.join(root, classname)
        os.makedirs(folder, exist_ok=True)
        base = rng.integers(0, 256, size=3)
        for i in range(n):
            noise = rng.integers(-40, 41, size=(height, width, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            path = os.path.join(folder, f"{classname}_{i:03d}{ext}")
            Image.fromarray(pixels).save(path, format=IMAGE_FORMATS[ext.lower()])
            paths.append(path)
    return paths


def make_datums(paths: Sequence[str], classnames: Optional[Sequence[str]] = None, domain: int = 0,
                datum_cls: Optional[type] = None) -> list:
    """One ``Datum`` per path, its class being the name of the folder holding it.

    Labels are positions in ``classnames`` (default: the sorted folder names). ``datum_cls`` lets a
    test build Dassl's ``Datum`` instead of the built-in one.
    """
    if datum_cls is None:
        from mutual_prompt.runtime.data.datasets import Datum as datum_cls
    folders = [os.path.basename(os.path.dirname(p)) for p in paths]
    order = list(classnames) if classnames is not None else sorted(set(folders))
    labels = {name: i for i, name in enumerate(order)}
    missing = sorted(set(folders) - set(labels))
    if missing:
        raise ValueError(f"Folders {missing} are not in classnames {order}")
    return [datum_cls(impath=p, label=labels[c], domain=domain, classname=c) for p, c in zip(paths, folders)]
