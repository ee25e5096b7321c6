"""ToyShapes: 64 "<colour> <shape>" classes drawn by ``mutual_prompt.toy.render``.

On first use the dataset renders itself (a fixed seed, so every machine gets the same pixels) to

    <DATASET.ROOT>/toy_shapes/
        images/<colour>_<shape>/{train,val,test}_<nnn>.png
        split_toy_shapes.json        CoOp's split format; labels in ``mutual_prompt.toy.CLASSNAMES`` order
        split_fewshot/               few-shot cache, as for every other dataset

and from then on loads like any other dataset (base/new halves, few-shot sampling). Labels 0-31 are
the base concepts and 32-63 the new ones; both halves hold every colour and every shape.
"""
import os
import shutil
import tempfile
from typing import List, Tuple

import numpy as np

from mutual_prompt.backend import DATASET_REGISTRY, Datum, DatasetBase, mkdir_if_missing
from mutual_prompt.splits import fewshot_and_subsample, read_split, save_split
from mutual_prompt.toy.render import CLASSNAMES, render

FOLDER = "toy_shapes"
SPLIT_FILE = "split_toy_shapes.json"
IMAGES_PER_CLASS = {"train": 20, "val": 5, "test": 20}
IMAGE_SIZE = 32
RENDER_SEED = 2024


def class_folder(classname: str) -> str:
    return classname.replace(" ", "_")


def render_toy_shapes(dataset_dir: str) -> None:
    """Render every image and write the split file under ``dataset_dir``, which must not exist yet.

    The tree is built in a temporary folder beside it and renamed into place, so a crash leaves no
    half-written dataset and two processes starting at once (DDP) end up with one complete copy.
    """
    parent = os.path.dirname(os.path.abspath(dataset_dir))
    mkdir_if_missing(parent)
    tmp_dir = tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=parent)
    os.chmod(tmp_dir, 0o755)  # mkdtemp's private 0700 would outlive the rename
    try:
        image_dir = os.path.join(tmp_dir, "images")
        splits = _render_images(image_dir)
        save_split(*splits, os.path.join(tmp_dir, SPLIT_FILE), image_dir)
        try:
            os.rename(tmp_dir, dataset_dir)
        except OSError:
            if not os.path.isfile(os.path.join(dataset_dir, SPLIT_FILE)):
                raise
    finally:
        if os.path.isdir(tmp_dir):
            shutil.rmtree(tmp_dir)


def _render_images(image_dir: str) -> Tuple[List[Datum], List[Datum], List[Datum]]:
    splits = {name: [] for name in IMAGES_PER_CLASS}
    print(f"Rendering ToyShapes ({len(CLASSNAMES)} classes) to {os.path.dirname(image_dir)}")
    for label, classname in enumerate(CLASSNAMES):
        folder = os.path.join(image_dir, class_folder(classname))
        mkdir_if_missing(folder)
        for split_index, (split, count) in enumerate(IMAGES_PER_CLASS.items()):
            rng = np.random.default_rng([RENDER_SEED, label, split_index])
            for i in range(count):
                path = os.path.join(folder, f"{split}_{i:03d}.png")
                image, _ = render(label, rng, IMAGE_SIZE)
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
        elif not os.path.isfile(self.split_path):
            raise FileNotFoundError(
                f"ToyShapes: {self.dataset_dir} exists but holds no {SPLIT_FILE}; delete the folder "
                "and it will be rendered again"
            )
        train, val, test = read_split(self.split_path, self.image_dir)
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)
