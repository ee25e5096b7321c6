"""ImageNetV2 (matched frequency), test only:
``imagenetv2/imagenetv2-matched-frequency-format-val/<label>/<image>.jpeg``, folders named by ImageNet
label (0 to 999) in the order of ``classnames.txt``."""
import os
from typing import Dict, List

from mutual_prompt.backend import DATASET_REGISTRY, Datum
from mutual_prompt.data import list_images, make_datum, require_dir

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetV2(ImageNetVariant):
    dataset_dir = "imagenetv2"
    image_folder = "imagenetv2-matched-frequency-format-val"

    def read_data(self, classnames: Dict[str, str], text_file: str) -> List[Datum]:
        items = []
        for label, classname in enumerate(classnames.values()):
            class_dir = require_dir(os.path.join(self.image_dir, str(label)), type(self).__name__)
            for imname in list_images(class_dir):
                items.append(make_datum(os.path.join(class_dir, imname), label, classname, class_dir))
        return items
