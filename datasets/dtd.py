"""Describable Textures (DTD): ``dtd/images/<texture>/<image>.jpg`` and ``split_zhou_DescribableTextures.json``.

Registered as ``DescribableTextures`` (CoOp's name, used by its ``configs/datasets/dtd.yaml``) and as
``DTD``.
"""
import os

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase
from mutual_prompt.splits import (
    dataset_folder,
    fewshot_and_subsample,
    load_or_create_split,
    read_and_split_data,
    require_dir,
)


@DATASET_REGISTRY.register()
class DescribableTextures(DatasetBase):
    dataset_dir = "dtd"

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, "dtd", name)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "images"), name)
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_DescribableTextures.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(
            self.split_path, self.image_dir, lambda: read_and_split_data(self.image_dir)
        )
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)


@DATASET_REGISTRY.register()
class DTD(DescribableTextures):
    """The same dataset under its short name."""
