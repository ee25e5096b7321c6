"""Stanford Cars: ``stanford_cars/{cars_train,cars_test}/<n>.jpg``, ``devkit/cars_train_annos.mat``,
``devkit/cars_meta.mat``, ``cars_test_annos_withlabels.mat`` and ``split_zhou_StanfordCars.json``
(whose paths, unlike the other datasets', are relative to the dataset folder). Class names put the
year first, as CoOp does: "2012 Tesla Model S Sedan"."""
import os
from typing import List

from scipy.io import loadmat

from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.data import Split, SplitFileDataset, make_datum, require_file, split_trainval

def _mat_field(path: str, key: str, dataset: str):
    data = loadmat(require_file(path, dataset))
    if key not in data:
        raise KeyError(f"{path}: no variable '{key}' (has: {', '.join(k for k in data if not k.startswith('__'))})")
    return data[key]


def year_first(classname: str) -> str:
    names = classname.split(" ")
    return " ".join([names[-1]] + names[:-1])


@DATASET_REGISTRY.register()
class StanfordCars(SplitFileDataset):
    dataset_dir = "stanford_cars"
    split_name = "StanfordCars"  # no image_folder: the split's paths are relative to the dataset folder

    def create_split(self) -> Split:
        meta_file = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        trainval_file = os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat")
        test_file = os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat")
        trainval = self.read_data("cars_train", trainval_file, meta_file)
        test = self.read_data("cars_test", test_file, meta_file)
        train, val = split_trainval(trainval)
        return train, val, test

    def read_data(self, image_dir: str, anno_file: str, meta_file: str) -> List[Datum]:
        annotations = _mat_field(anno_file, "annotations", type(self).__name__)[0]
        class_names = _mat_field(meta_file, "class_names", type(self).__name__)[0]
        items = []
        for anno in annotations:
            imname = str(anno["fname"][0])
            label = int(anno["class"][0, 0]) - 1
            if not 0 <= label < len(class_names):
                raise ValueError(
                    f"{anno_file}: image {imname} has class {label + 1}, but {meta_file} names "
                    f"{len(class_names)} classes"
                )
            classname = year_first(str(class_names[label][0]))
            items.append(make_datum(os.path.join(self.dataset_dir, image_dir, imname), label, classname, anno_file))
        return items
