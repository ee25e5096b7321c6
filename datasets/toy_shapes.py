"""ToyShapes: 64 "<colour> <shape>" classes drawn by ``mutual_prompt.tools.toy.render``.

The images are seen under ``LAMPLIGHT`` (a warm colour cast, lower contrast, slight blur), a
downstream domain the toy CLIP never saw in pre-training, so that zero-shot CLIP is good but not
perfect on it and prompt learning has something to adapt to, as on the real benchmarks.

On first use the dataset renders itself (a fixed seed, so every machine gets the same pixels) to

    <DATASET.ROOT>/toy_shapes/
        images/<colour>_<shape>/{train,val,test}_<nnn>.png
        split_toy_shapes.json        CoOp's split format; labels in ``mutual_prompt.toy.CLASSNAMES`` order
        render_info.json             what rendered the images (version, seed, domain)
        split_fewshot/               few-shot cache, as for every other dataset

and from then on loads like any other dataset (base/new halves, few-shot sampling). Labels 0-31 are
the base concepts and 32-63 the new ones; both halves hold every colour and every shape. A copy
whose ``render_info.json`` is missing (rendered before the domain shift) or differs from what this
code renders is refused with an error that says to delete it.
"""
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from typing import Any, Dict, List, Tuple

import numpy as np

from mutual_prompt.backend import DATASET_REGISTRY, Datum, DatasetBase
from mutual_prompt.files import exclusive_lock, mkdir_if_missing, owner_record, read_json, write_json
from mutual_prompt.data import fewshot_and_subsample, read_split, save_split
from mutual_prompt.tools.toy.render import CLASSNAMES, LAMPLIGHT, render

FOLDER = "toy_shapes"
SPLIT_FILE = "split_toy_shapes.json"
INFO_FILE = "render_info.json"
IMAGES_PER_CLASS = {"train": 20, "val": 5, "test": 20}
IMAGE_SIZE = 32
RENDER_SEED = 2024
DOMAIN = LAMPLIGHT
# Bump whenever the rendered pixels change, so that older copies on disk are refused, not reused.
# Version 1 (no render_info.json) rendered the pre-training domain.
RENDER_VERSION = 2


def class_folder(classname: str) -> str:
    return classname.replace(" ", "_")


def render_info() -> Dict[str, Any]:
    """What the images rendered by this code depend on, as JSON reads it back."""
    info = {"version": RENDER_VERSION, "seed": RENDER_SEED, "image_size": IMAGE_SIZE,
            "images_per_class": IMAGES_PER_CLASS, "domain": asdict(DOMAIN)}
    return json.loads(json.dumps(info))


def check_rendered_copy(dataset_dir: str) -> None:
    """Raise unless ``dataset_dir`` holds a complete copy rendered as this code renders it."""
    delete_hint = "delete the folder and it will be rendered again"
    if not os.path.isfile(os.path.join(dataset_dir, SPLIT_FILE)):
        raise FileNotFoundError(f"ToyShapes: {dataset_dir} exists but holds no {SPLIT_FILE}; {delete_hint}")
    info_path = os.path.join(dataset_dir, INFO_FILE)
    if not os.path.isfile(info_path):
        raise RuntimeError(
            f"ToyShapes: {dataset_dir} holds no {INFO_FILE}: it was rendered by an older version of ToyShapes "
            f"(version 1, before the {DOMAIN.name} domain shift) and its images differ from this version's; "
            f"{delete_hint}"
        )
    found, expected = read_json(info_path), render_info()
    if found != expected:
        raise RuntimeError(
            f"ToyShapes: {dataset_dir} was rendered differently from what this version renders "
            f"({info_path} says {found}, expected {expected}); {delete_hint}"
        )


def render_toy_shapes(dataset_dir: str) -> None:
    """Render every image and write the split and info files under ``dataset_dir``, unless it exists.

    Renders take turns under ``<dataset_dir>.lock``: a process that finds the lock held waits, then
    finds the copy the holder rendered and leaves it alone. The tree is built in a temporary folder
    beside ``dataset_dir`` and renamed into place, so a crash leaves no half-written dataset.
    """
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    with exclusive_lock(os.path.abspath(dataset_dir) + ".lock", owner=owner_record()):
        if os.path.exists(dataset_dir):
            return
        remove_interrupted_renders(parent)
        tmp_dir = tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=parent)
        os.chmod(tmp_dir, 0o755)  # mkdtemp's private 0700 would outlive the rename
        try:
            image_dir = os.path.join(tmp_dir, "images")
            splits = _render_images(image_dir)
            save_split(*splits, os.path.join(tmp_dir, SPLIT_FILE), image_dir)
            write_json(render_info(), os.path.join(tmp_dir, INFO_FILE))
            os.rename(tmp_dir, dataset_dir)
        finally:
            if os.path.isdir(tmp_dir):
                shutil.rmtree(tmp_dir)


def remove_interrupted_renders(parent: str) -> None:
    """Delete the temporary folders (``.toy_shapes.*``) of renders killed before their rename.

    Call only while holding the render lock: no other process can be rendering into one of them.
    """
    for name in os.listdir(parent):
        path = os.path.join(parent, name)
        if name.startswith(f".{FOLDER}.") and os.path.isdir(path):
            print(f"ToyShapes: removing {path}, left by an interrupted render")
            shutil.rmtree(path, ignore_errors=True)


def _render_images(image_dir: str) -> Tuple[List[Datum], List[Datum], List[Datum]]:
    splits = {name: [] for name in IMAGES_PER_CLASS}
    print(f"Rendering ToyShapes ({len(CLASSNAMES)} classes, {DOMAIN.name} domain) to {os.path.dirname(image_dir)}")
    for label, classname in enumerate(CLASSNAMES):
        folder = os.path.join(image_dir, class_folder(classname))
        mkdir_if_missing(folder)
        for split_index, (split, count) in enumerate(IMAGES_PER_CLASS.items()):
            rng = np.random.default_rng([RENDER_SEED, label, split_index])
            for i in range(count):
                path = os.path.join(folder, f"{split}_{i:03d}.png")
                image, _ = render(label, rng, IMAGE_SIZE, DOMAIN)
                image.save(path)
                splits[split].append(Datum(impath=path, label=label, classname=classname))
    return splits["train"], splits["val"], splits["test"]


@DATASET_REGISTRY.register()
class ToyShapes(DatasetBase):
    dataset_dir = FOLDER

    def __init__(self, cfg) -> None:
        root = cfg.DATASET.ROOT
        if not root:
            raise ValueError("ToyShapes: DATASET.ROOT is empty; set it (or --root) to a folder where "
                             f"'{FOLDER}/' may be rendered")
        self.dataset_dir = os.path.join(os.path.abspath(os.path.expanduser(root)), FOLDER)
        self.image_dir = os.path.join(self.dataset_dir, "images")
        self.split_path = os.path.join(self.dataset_dir, SPLIT_FILE)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        if not os.path.exists(self.dataset_dir):
            render_toy_shapes(self.dataset_dir)
        check_rendered_copy(self.dataset_dir)
        (train, val, test), self.split_sha256 = read_split(self.split_path, self.image_dir)
        train, val, test = fewshot_and_subsample(self, cfg, train=train, val=val, test=test)
        super().__init__(train_x=train, val=val, test=test)
