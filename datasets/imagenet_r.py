"""ImageNet-R, test only: ``imagenet-rendition/imagenet-r/<wnid>/<image>.jpg`` (200 classes) and
ImageNet's ``classnames.txt``; labels 0-199 follow the sorted folders (README.txt is skipped)."""
import os

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase
from mutual_prompt.splits import dataset_folder, list_class_folders, require_dir, subsample_classes

from .imagenet import read_class_folders, read_classnames

NAME = "ImageNetR"


@DATASET_REGISTRY.register()
class ImageNetR(DatasetBase):
    dataset_dir = "imagenet-rendition"

    def __init__(self, cfg) -> None:
        self.dataset_dir = dataset_folder(cfg, "imagenet-rendition", NAME)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "imagenet-r"), NAME)
        text_file = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(text_file, NAME)
        data = read_class_folders(self.image_dir, list_class_folders(self.image_dir), classnames, text_file)
        (data,) = subsample_classes(data, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=data, test=data)
