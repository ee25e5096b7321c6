"""ImageNet-R, test only: ``imagenet-rendition/imagenet-r/<wnid>/<image>.jpg`` (200 classes) and
ImageNet's ``classnames.txt``; labels 0-199 follow the sorted folders (README.txt is skipped)."""
from mutual_prompt.backend import DATASET_REGISTRY

from .imagenet import ImageNetVariant


@DATASET_REGISTRY.register()
class ImageNetR(ImageNetVariant):
    dataset_dir = "imagenet-rendition"
    image_folder = "imagenet-r"
