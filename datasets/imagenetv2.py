"""ImageNetV2 (matched frequency), test only:
``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/<image>.jpeg``, folders named by ImageNet
label (0 to 999) in the order of ``classnames.txt``."""
import os
from typing import Dict, List

from mutual_prompt.backend import DATASET_REGISTRY, DatasetBase, Datum
from mutual_prompt.splits import dataset_folder, list_images, make_datum, require_dir, subsample_classes

from .imagenet import read_classnames

@DATASET_REGISTRY.register()
class ImageNetV2(DatasetBase):
    dataset_dir = "imagenetv2"

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, name)
        self.image_dir = require_dir(os.path.join(self.dataset_dir, "imagenetv2-matched-frequency-format-val"), name)
        classnames = read_classnames(os.path.join(self.dataset_dir, "classnames.txt"), name)
        (data,) = subsample_classes(self.read_data(classnames), subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: Dict[str, str]) -> List[Datum]:
        items = []
        for label, classname in enumerate(classnames.values()):
            class_dir = require_dir(os.path.join(self.image_dir, str(label)), type(self).__name__)
            for imname in list_images(class_dir):
                items.append(make_datum(os.path.join(class_dir, imname), label, classname, class_dir))
        return items
