"""FGVC-Aircraft (variants): ``fgvc_aircraft/images/<id>.jpg``, ``variants.txt`` and
``images_variant_{train,val,test}.txt``, the dataset's own split (there is no split_zhou file)."""
import os
from typing import Dict, List

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase, Datum
from mutual_prompt.data import dataset_folder, fewshot_and_subsample, make_datum, read_text_lines, require_dir

@DATASET_REGISTRY.register()
class FGVCAircraft(DatasetBase):
    dataset_dir = "fgvc_aircraft"
    split_sha256 = ""  # no split file: the split is the dataset's own images_variant_*.txt

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, name)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "images"), name)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        classnames = read_text_lines(os.path.join(self.dataset_dir, "variants.txt"), name)
        cname2lab = {c: i for i, c in enumerate(classnames)}
        train = self.read_data(cname2lab, "images_variant_train.txt")
        val = self.read_data(cname2lab, "images_variant_val.txt")
        test = self.read_data(cname2lab, "images_variant_test.txt")

        train, val, test = fewshot_and_subsample(self, cfg, train=train, val=val, test=test)
        super().__init__(train_x=train, val=val, test=test)

    def read_data(self, cname2lab: Dict[str, int], split_file: str) -> List[Datum]:
        """Lines ``<image id> <variant, possibly with spaces>``."""
        filepath = os.path.join(self.dataset_dir, split_file)
        items = []
        for line in read_text_lines(filepath, type(self).__name__):
            imname, _, classname = line.partition(" ")
            if classname not in cname2lab:
                raise ValueError(f"{filepath}: variant {classname!r} in line {line!r} is not listed in variants.txt")
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(make_datum(impath, cname2lab[classname], classname, filepath))
        return items
