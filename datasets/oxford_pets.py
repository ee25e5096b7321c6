"""Oxford-IIIT Pets: ``oxford_pets/images/<Breed>_<n>.jpg``, ``annotations/{trainval,test}.txt`` and
``split_zhou_OxfordPets.json``. Class names are the lower-cased breeds from the image names."""
import os
from typing import List

from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.data import Split, SplitFileDataset, make_datum, read_text_lines, split_trainval

@DATASET_REGISTRY.register()
class OxfordPets(SplitFileDataset):
    dataset_dir = "oxford_pets"
    image_folder = "images"
    split_name = "OxfordPets"

    def create_split(self) -> Split:
        trainval = self.read_data("trainval.txt")
        test = self.read_data("test.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, split_file: str) -> List[Datum]:
        """Lines ``<Breed>_<n> <class id> <species> <breed id>``; ``#`` lines are comments."""
        filepath = os.path.join(self.dataset_dir, "annotations", split_file)
        items = []
        for line in read_text_lines(filepath, type(self).__name__):
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
