"""``SplitFileDataset``: the base class of the datasets whose split is a CoOp split file."""
import os

from mutual_prompt.backend import DatasetBase

from .fewshot import fewshot_and_subsample
from .paths import dataset_folder, require_dir
from .split_files import Split, load_or_create_split


class SplitFileDataset(DatasetBase):
    """A dataset whose train/val/test split lives in CoOp's ``split_zhou_<split_name>.json``.

    Subclasses set ``dataset_dir`` (the folder under ``DATASET.ROOT``), ``image_folder`` (the
    images' folder inside it, to which the split's paths are relative; "" = the dataset folder
    itself) and ``split_name``, and write ``create_split()``, which builds the split from the
    dataset's own files the first time (it is saved and reused afterwards; see
    ``load_or_create_split``). Few-shot sampling and the base/new halves follow, as for every
    dataset. Errors name the dataset by its class name. ``split_sha256`` is the sha256 (hex) of the
    split file's bytes as read.
    """

    image_folder = ""
    split_name = ""
    split_sha256 = ""

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, name)
        self.image_dir = self.dataset_dir
        if self.image_folder:
            self.image_dir = require_dir(os.path.join(self.dataset_dir, self.image_folder), name)
        self.split_path = os.path.join(self.dataset_dir, f"split_zhou_{self.split_name}.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        (train, val, test), self.split_sha256 = load_or_create_split(self.split_path, self.image_dir, self.create_split)
        train, val, test = fewshot_and_subsample(self, cfg, train=train, val=val, test=test)
        super().__init__(train_x=train, val=val, test=test)

    def create_split(self) -> Split:
        """The split built from the dataset's own files, drawing from the global ``random``."""
        raise NotImplementedError
