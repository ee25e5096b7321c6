"""Oxford Flowers-102: ``oxford_flowers/jpg/image_<00001>.jpg``, ``imagelabels.mat``,
``cat_to_name.json`` and ``split_zhou_OxfordFlowers.json``."""
import os
from collections import defaultdict
from typing import Dict, List

from scipy.io import loadmat

from mutual_prompt.backend import DATASET_REGISTRY
from mutual_prompt.files import read_json
from mutual_prompt.data import Split, SplitFileDataset, make_datum, require_file, split_class_images

@DATASET_REGISTRY.register()
class OxfordFlowers(SplitFileDataset):
    dataset_dir = "oxford_flowers"
    image_folder = "jpg"
    split_name = "OxfordFlowers"

    def create_split(self) -> Split:
        """Image i (from 1) has label ``labels[i-1]`` (from 1) in ``imagelabels.mat``; each class is
        split 50/20/30 at random, classes taken in order of first appearance, as in CoOp."""
        label_file = os.path.join(self.dataset_dir, "imagelabels.mat")
        lab2cname_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        name = type(self).__name__
        mat = loadmat(require_file(label_file, name))
        if "labels" not in mat:
            raise KeyError(f"{label_file}: no variable 'labels'")
        tracker: Dict[int, List[str]] = defaultdict(list)
        for i, label in enumerate(mat["labels"].ravel()):
            tracker[int(label)].append(os.path.join(self.image_dir, f"image_{i + 1:05d}.jpg"))

        lab2cname = read_json(require_file(lab2cname_file, name))
        print("Splitting data into 50% train, 20% val, and 30% test")
        train, val, test = [], [], []
        for label, impaths in tracker.items():
            if str(label) not in lab2cname:
                raise KeyError(f"{lab2cname_file} has no name for label {label} (used in {label_file})")
            cname = lab2cname[str(label)]
            parts = split_class_images(impaths, 0.5, 0.2, f"{label_file}, label {label}")
            for out, paths in zip((train, val, test), parts):
                out.extend(make_datum(p, label - 1, cname, label_file) for p in paths)
        return train, val, test
