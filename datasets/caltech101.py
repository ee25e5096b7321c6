"""Caltech-101: ``caltech-101/101_ObjectCategories/<category>/<image>.jpg`` and
``split_zhou_Caltech101.json``. As in CoOp, the background and easy-faces folders are not classes and
four plural or capitalised folder names are renamed."""
import os

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase
from mutual_prompt.splits import (
    dataset_folder,
    fewshot_and_subsample,
    load_or_create_split,
    read_and_split_data,
    require_dir,
)

IGNORED = ("BACKGROUND_Google", "Faces_easy")
NEW_CNAMES = {
    "airplanes": "airplane",
    "Faces": "face",
    "Leopards": "leopard",
    "Motorbikes": "motorbike",
}


@DATASET_REGISTRY.register()
class Caltech101(DatasetBase):
    dataset_dir = "caltech-101"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "caltech-101", "Caltech101")
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "101_ObjectCategories"), "Caltech101")
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_Caltech101.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(
            self.split_path,
            self.image_dir,
            lambda: read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES),
        )
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)
