"""The real datasets a run can name, as CoOp prepares them: folder, classes and split sizes.

Sizes are those of CoOp's split files (``split_zhou_<Name>.json``; FGVCAircraft's own split; ImageNet's
train folder and 50,000 validation images as the test set) and of the four ImageNet variants' test sets.
Keyed by the name of the dataset's config in ``configs/datasets`` (what the scripts and the sweep take).
"""
from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class DatasetEntry:
    config_name: str  # configs/datasets/<config_name>.yaml
    registry_name: str  # DATASET.NAME
    folder: str  # under DATA
    classes: int
    train: Optional[int]  # None: a test-only dataset (the ImageNet variants)
    val: Optional[int]
    test: int


_ENTRIES = (
    DatasetEntry("imagenet", "ImageNet", "imagenet", 1000, 1281167, None, 50000),
    DatasetEntry("caltech101", "Caltech101", "caltech-101", 100, 4128, 1649, 2465),
    DatasetEntry("oxford_pets", "OxfordPets", "oxford_pets", 37, 2944, 736, 3669),
    DatasetEntry("stanford_cars", "StanfordCars", "stanford_cars", 196, 6509, 1635, 8041),
    DatasetEntry("oxford_flowers", "OxfordFlowers", "oxford_flowers", 102, 4093, 1633, 2463),
    DatasetEntry("food101", "Food101", "food-101", 101, 50500, 20200, 30300),
    DatasetEntry("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft", 100, 3334, 3333, 3333),
    DatasetEntry("sun397", "SUN397", "sun397", 397, 15880, 3970, 19850),
    DatasetEntry("dtd", "DescribableTextures", "dtd", 47, 2820, 1128, 1692),
    DatasetEntry("eurosat", "EuroSAT", "eurosat", 10, 13500, 5400, 8100),
    DatasetEntry("ucf101", "UCF101", "ucf101", 101, 7639, 1898, 3783),
    DatasetEntry("imagenetv2", "ImageNetV2", "imagenetv2", 1000, None, None, 10000),
    DatasetEntry("imagenet_sketch", "ImageNetSketch", "imagenet-sketch", 1000, None, None, 50889),
    DatasetEntry("imagenet_a", "ImageNetA", "imagenet-adversarial", 200, None, None, 7500),
    DatasetEntry("imagenet_r", "ImageNetR", "imagenet-rendition", 200, None, None, 30000),
)
CATALOG: Dict[str, DatasetEntry] = {entry.config_name: entry for entry in _ENTRIES}
