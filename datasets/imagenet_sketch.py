"""ImageNet-Sketch, test only: ``imagenet-sketch/images/<wnid>/<image>.JPEG`` and ImageNet's
``classnames.txt``; labels follow the sorted folders."""
from mutual_prompt.backend import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetVariant):
    dataset_dir = "imagenet-sketch"
    image_folder = "images"
