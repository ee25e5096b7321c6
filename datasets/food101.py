"""Food-101: ``food-101/images/<dish>/<image>.jpg`` and ``split_zhou_Food101.json``."""
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
class Food101(DatasetBase):
    dataset_dir = "food-101"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "food-101", "Food101")
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "images"), "Food101")
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_Food101.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(
            self.split_path, self.image_dir, lambda: read_and_split_data(self.image_dir)
        )
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)
