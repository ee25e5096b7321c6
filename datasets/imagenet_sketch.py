"""ImageNet-Sketch, test only: ``imagenet-sketch/images/<wnid>/<image>.JPEG`` and ImageNet's
``classnames.txt``; labels follow the sorted folders."""
import os

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase
from mutual_prompt.splits import dataset_folder, list_class_folders, require_dir, subsample_classes

from .imagenet import read_class_folders, read_classnames

NAME = "ImageNetSketch"


@DATASET_REGISTRY.register()
class ImageNetSketch(DatasetBase):
    dataset_dir = "imagenet-sketch"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "imagenet-sketch", NAME)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "images"), NAME)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(text_file, NAME)
        data = read_class_folders(self.image_dir, list_class_folders(self.image_dir), classnames, text_file)
        (data,) = subsample_classes(data, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=data, test=data)
