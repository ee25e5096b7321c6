"""ImageNet: ``imagenet/images/{train,val}/<wnid>/<image>.JPEG`` and ``classnames.txt``
(``<wnid> <class name>`` per line, CLIP's names). Labels follow the sorted train folders; the val set
is the test set (and the validation set), as in CoOp. Nothing is cached except few-shot samples
(CoOp's ``preprocessed.pkl`` is neither read nor written)."""
import os
from collections import OrderedDict
from typing import Dict, List, Sequence

from tqdm import tqdm

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase, Datum
from mutual_prompt.data import (
    dataset_folder,
    fewshot_and_subsample,
    list_class_folders,
    list_images,
    make_datum,
    read_text_lines,
    require_dir,
    subsample_classes,
)

def read_classnames(text_file: str, dataset: str) -> "OrderedDict[str, str]":
    """``classnames.txt``: folder name -> class name, in file order."""
    classnames: "OrderedDict[str, str]" = OrderedDict()
    for line in read_text_lines(text_file, dataset):
        folder, _, classname = line.partition(" ")
        if not classname.strip():
            raise ValueError(f"{text_file}: expected '<folder> <class name>', got {line!r}")
        classnames[folder] = classname.strip()
    return classnames


def read_class_folders(
    image_dir: str, folders: Sequence[str], classnames: Dict[str, str], text_file: str
) -> List[Datum]:
    """Images of ``<image_dir>/<folder>/``, labelled by the folder's position in ``folders``."""
    items = []
    for label, folder in enumerate(tqdm(folders, desc=f"Listing {image_dir}", unit="class", leave=False)):
        if folder not in classnames:
            raise KeyError(f"{text_file} has no class name for the folder {os.path.join(image_dir, folder)}")
        class_dir = os.path.join(image_dir, folder)
        for imname in list_images(class_dir):
            items.append(make_datum(os.path.join(class_dir, imname), label, classnames[folder], class_dir))
    return items


@DATASET_REGISTRY.register()
class ImageNet(DatasetBase):
    dataset_dir = "imagenet"
    split_sha256 = ""  # no split file: the split is the image folders

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, name)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "images"), name)
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(text_file, name)

        train_dir = require_dir(os.path.join(self.image_dir, "train"), name)
        val_dir = require_dir(os.path.join(self.image_dir, "val"), name)
        folders = list_class_folders(train_dir)
        val_folders = list_class_folders(val_dir)
        if val_folders != folders:
            only_train = sorted(set(folders) - set(val_folders))
            only_val = sorted(set(val_folders) - set(folders))
            raise ValueError(
                f"{name}: {train_dir} and {val_dir} must hold the same class folders; only in train: "
                f"{only_train[:5]}{'...' if len(only_train) > 5 else ''}, only in val: "
                f"{only_val[:5]}{'...' if len(only_val) > 5 else ''}"
            )
        train = read_class_folders(train_dir, folders, classnames, text_file)
        test = read_class_folders(val_dir, folders, classnames, text_file)

        train, _, test = fewshot_and_subsample(self, cfg, train=train, val=None, test=test)
        super().__init__(train_x=train, val=test, test=test)


class ImageNetVariant(DatasetBase):
    """A test-only ImageNet variant: ``<dataset_dir>/<image_folder>/<wnid>/<image>`` and ImageNet's
    ``classnames.txt`` in ``<dataset_dir>``; labels follow the sorted class folders (files beside them,
    such as README.txt, are skipped). Each variant's module registers a subclass that sets
    ``dataset_dir`` and ``image_folder`` (and overrides ``read_data`` for another folder layout);
    errors name the dataset by that subclass's name."""

    image_folder = ""
    split_sha256 = ""  # no split file: the split is the image folders

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, name)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, self.image_folder), name)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(text_file, name)
        (data,) = subsample_classes(self.read_data(classnames, text_file), subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: Dict[str, str], text_file: str) -> List[Datum]:
        return read_class_folders(self.image_dir, list_class_folders(self.image_dir), classnames, text_file)
