"""Oxford-IIIT Pets: ``oxford_pets/images/<Breed>_<n>.jpg``, ``annotations/{trainval,test}.txt`` and
``split_zhou_OxfordPets.json``. Class names are the lower-cased breeds from the image names."""
import os
from typing import List

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase, Datum
from mutual_prompt.splits import (
    Split,
    dataset_folder,
    fewshot_and_subsample,
    load_or_create_split,
    make_datum,
    read_text_lines,
    require_dir,
    split_trainval,
)

NAME = "OxfordPets"


@DATASET_REGISTRY.register()
class OxfordPets(DatasetBase):
    dataset_dir = "oxford_pets"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "oxford_pets", NAME)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "images"), NAME)
        self.anno_dir = os.path.join(self.dataset_dir, "annotations")
        self.split_path = os.path.join(self.dataset_dir, "split_zhou_OxfordPets.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(self.split_path, self.image_dir, self._split_from_annotations)
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)

    def _split_from_annotations(self) -> Split:
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, split_file: str) -> List[Datum]:
        """Lines ``<Breed>_<n> <class id> <species> <breed id>``; ``#`` lines are comments."""
        filepath = os.path.join(self.anno_dir, split_file)
        items = []
        for line in read_text_lines(filepath, NAME):
            if line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) < 2 or not fields[1].isdigit() or "_" not in fields[0]:
                raise ValueError(f"{filepath}: expected '<Breed>_<n> <class id> ...', got {line!r}")
            imname, class_id = fields[0], int(fields[1])
            breed = "_".join(imname.split("_")[:-1]).lower()
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(make_datum(impath, class_id - 1, breed, filepath))
        return items
