"""SUN397: ``sun397/SUN397/<letter>/<category>[/<sub>]/<image>.jpg``, ``ClassName.txt``,
``Training_01.txt`` / ``Testing_01.txt`` (partition 1) and ``split_zhou_SUN397.json``. Class names drop
the letter and put the qualifier first: ``/a/apartment_building/outdoor`` -> "outdoor apartment_building"."""
import os
from typing import Dict, List

from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.data import Split, SplitFileDataset, make_datum, read_text_lines, split_trainval

def readable_classname(category: str) -> str:
    """``a/apartment_building/outdoor`` -> ``outdoor apartment_building``."""
    return " ".join(category.split("/")[1:][::-1])


@DATASET_REGISTRY.register()
class SUN397(SplitFileDataset):
    dataset_dir = "sun397"
    image_folder = "SUN397"
    split_name = "SUN397"

    def create_split(self) -> Split:
        class_file = os.path.join(self.dataset_dir, "ClassName.txt")
        classnames = [line.lstrip("/") for line in read_text_lines(class_file, type(self).__name__)]
        cname2lab = {c: i for i, c in enumerate(classnames)}
        trainval = self.read_data(cname2lab, "Training_01.txt")
        test = self.read_data(cname2lab, "Testing_01.txt")
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, cname2lab: Dict[str, int], text_file: str) -> List[Datum]:
        """Lines ``/<letter>/<category>/<image>.jpg``."""
        filepath = os.path.join(self.dataset_dir, text_file)
        items = []
        for line in read_text_lines(filepath, type(self).__name__):
            imname = line.lstrip("/")
            category = os.path.dirname(imname)
            if category not in cname2lab:
                raise ValueError(f"{filepath}: category {category!r} of {line!r} is not listed in ClassName.txt")
            impath = os.path.join(self.image_dir, imname)
            items.append(make_datum(impath, cname2lab[category], readable_classname(category), filepath))
        return items
