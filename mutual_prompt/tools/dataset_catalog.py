"""The real datasets a run can name, as CoOp prepares them: folder, classes, split sizes, where to get
them and what a run reads of their folder.

Sizes are those of CoOp's split files (``split_zhou_<Name>.json``; FGVCAircraft's own split; ImageNet's
train folder and 50,000 validation images as the test set) and of the four ImageNet variants' test sets.
Download sources are those of CoOp's DATASETS.md. Keyed by the name of the dataset's config in
``configs/datasets`` (what the scripts and the sweep take). ``python -m mutual_prompt.doctor`` checks a
data folder against these facts.
"""
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

DRIVE = "https://drive.google.com/file/d/{}/view?usp=sharing"
IMAGENET_CLASSNAMES = DRIVE.format("1-61f_ol79pViBFDG_IDlUQSwoLcn2XXF")
VARIANT_CLASSNAMES = "classnames.txt: a copy of imagenet/classnames.txt"


@dataclass(frozen=True)
class DatasetEntry:
    config_name: str  # configs/datasets/<config_name>.yaml
    registry_name: str  # DATASET.NAME
    folder: str  # under DATA
    classes: int
    train: Optional[int]  # None: a test-only dataset (the ImageNet variants)
    val: Optional[int]
    test: int
    sources: Tuple[str, ...]  # where to download the images and annotations
    layout: str  # what the folder holds, in one line
    split_file: str = ""  # CoOp's split file in the folder; "" where the split is the dataset's own
    split_source: str = ""  # where to download the split file
    image_folder: str = ""  # the folder the split file's paths are relative to ("" = the dataset folder)
    split_inputs: Tuple[str, ...] = ()  # files a run reads to build a missing split file
    split_lists: Tuple[Tuple[str, str], ...] = ()  # (part, list file): FGVCAircraft's "<image id> <variant>" lines
    class_folders: Tuple[Tuple[str, str], ...] = ()  # (part, folder of class folders): the split is the folders
    required: Tuple[str, ...] = ()  # other files every run reads


def _split_zhou(config_name: str, registry_name: str, folder: str, classes: int, sizes: Tuple[int, int, int],
                sources: Tuple[str, ...], layout: str, split_id: str, image_folder: str,
                split_inputs: Tuple[str, ...] = (), required: Tuple[str, ...] = ()) -> DatasetEntry:
    """A dataset split by CoOp's ``split_zhou_<registry_name>.json``."""
    return DatasetEntry(config_name, registry_name, folder, classes, *sizes, sources=sources, layout=layout,
                        split_file=f"split_zhou_{registry_name}.json", split_source=DRIVE.format(split_id),
                        image_folder=image_folder, split_inputs=split_inputs, required=required)


def _imagenet_variant(config_name: str, registry_name: str, folder: str, classes: int, test: int, source: str,
                      image_folder: str) -> DatasetEntry:
    return DatasetEntry(config_name, registry_name, folder, classes, None, None, test,
                        sources=(source, IMAGENET_CLASSNAMES),
                        layout=f"{image_folder}/<class folder>/<image>; {VARIANT_CLASSNAMES}",
                        class_folders=(("test", image_folder),), required=("classnames.txt",))


_ENTRIES = (
    DatasetEntry("imagenet", "ImageNet", "imagenet", 1000, 1281167, None, 50000,
                 sources=("https://image-net.org/index.php", IMAGENET_CLASSNAMES),
                 layout="images/train/<wnid>/*.JPEG, images/val/<wnid>/*.JPEG (the same 1000 folders), "
                        "classnames.txt",
                 class_folders=(("train", "images/train"), ("test", "images/val")), required=("classnames.txt",)),
    _split_zhou("caltech101", "Caltech101", "caltech-101", 100, (4128, 1649, 2465),
                ("http://www.vision.caltech.edu/Image_Datasets/Caltech101/101_ObjectCategories.tar.gz",),
                "101_ObjectCategories/<category>/*.jpg, split_zhou_Caltech101.json",
                "1hyarUivQE36mY6jSomru6Fjd-JzwcCzN", "101_ObjectCategories"),
    _split_zhou("oxford_pets", "OxfordPets", "oxford_pets", 37, (2944, 736, 3669),
                ("https://www.robots.ox.ac.uk/~vgg/data/pets/data/images.tar.gz",
                 "https://www.robots.ox.ac.uk/~vgg/data/pets/data/annotations.tar.gz"),
                "images/*.jpg, annotations/, split_zhou_OxfordPets.json",
                "1501r8Ber4nNKvmlFVQZ8SeUHTcdTTEqs", "images",
                split_inputs=("annotations/trainval.txt", "annotations/test.txt")),
    _split_zhou("stanford_cars", "StanfordCars", "stanford_cars", 196, (6509, 1635, 8041),
                ("http://ai.stanford.edu/~jkrause/car196/cars_train.tgz",
                 "http://ai.stanford.edu/~jkrause/car196/cars_test.tgz",
                 "https://ai.stanford.edu/~jkrause/cars/car_devkit.tgz",
                 "http://ai.stanford.edu/~jkrause/car196/cars_test_annos_withlabels.mat"),
                "cars_train/, cars_test/, devkit/, cars_test_annos_withlabels.mat, split_zhou_StanfordCars.json",
                "1ObCFbaAgVu0I-k_Au-gIUcefirdAuizT", "",
                split_inputs=("cars_train", "cars_test", "devkit/cars_meta.mat", "devkit/cars_train_annos.mat",
                              "cars_test_annos_withlabels.mat")),
    _split_zhou("oxford_flowers", "OxfordFlowers", "oxford_flowers", 102, (4093, 1633, 2463),
                ("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",
                 "https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",
                 DRIVE.format("1AkcxCXeK_RCGCEC_GvmWxjcjaNhu-at0")),
                "jpg/image_*.jpg, imagelabels.mat, cat_to_name.json, split_zhou_OxfordFlowers.json",
                "1Pp0sRXzZFZq15zVOzKjKBu4A9i01nozT", "jpg", split_inputs=("imagelabels.mat", "cat_to_name.json")),
    _split_zhou("food101", "Food101", "food-101", 101, (50500, 20200, 30300),
                ("https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",),
                "images/<dish>/*.jpg, meta/, split_zhou_Food101.json",
                "1QK0tGi096I0Ba6kggatX1ee6dJFIcEJl", "images"),
    DatasetEntry("fgvc_aircraft", "FGVCAircraft", "fgvc_aircraft", 100, 3334, 3333, 3333,
                 sources=("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
                 layout="the archive's data/ folder renamed: images/*.jpg, variants.txt, images_variant_*.txt",
                 image_folder="images",
                 split_lists=(("train", "images_variant_train.txt"), ("val", "images_variant_val.txt"),
                              ("test", "images_variant_test.txt")),
                 required=("variants.txt",)),
    _split_zhou("sun397", "SUN397", "sun397", 397, (15880, 3970, 19850),
                ("http://vision.princeton.edu/projects/2010/SUN/SUN397.tar.gz",
                 "https://vision.princeton.edu/projects/2010/SUN/download/Partitions.zip"),
                "SUN397/<letter>/<category>/*.jpg, ClassName.txt, Training_01.txt, Testing_01.txt, "
                "split_zhou_SUN397.json",
                "1y2RD81BYuiyvebdN-JymPfyWYcd8_MUq", "SUN397",
                split_inputs=("ClassName.txt", "Training_01.txt", "Testing_01.txt")),
    _split_zhou("dtd", "DescribableTextures", "dtd", 47, (2820, 1128, 1692),
                ("https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz",),
                "images/<texture>/*.jpg, imdb/, labels/, split_zhou_DescribableTextures.json",
                "1u3_QfB467jqHgNXC00UIzbLZRQCg2S7x", "images"),
    _split_zhou("eurosat", "EuroSAT", "eurosat", 10, (13500, 5400, 8100),
                ("http://madm.dfki.de/files/sentinel/EuroSAT.zip",),
                "2750/<land use>/*.jpg, split_zhou_EuroSAT.json",
                "1Ip7yaCWFi0eaOFUGga0lUdVi_DDQth1o", "2750"),
    _split_zhou("ucf101", "UCF101", "ucf101", 101, (7639, 1898, 3783),
                (DRIVE.format("10Jqome3vtUA2keJkNanAiFpgbyC9Hc2O"),),
                "UCF-101-midframes/<Action_Words>/*.jpg, split_zhou_UCF101.json",
                "1I0S0q91hJfsV9Gf4xDIjgDq4AqBNJb1y", "UCF-101-midframes",
                split_inputs=("ucfTrainTestlist/classInd.txt", "ucfTrainTestlist/trainlist01.txt",
                              "ucfTrainTestlist/testlist01.txt")),
    _imagenet_variant("imagenetv2", "ImageNetV2", "imagenetv2", 1000, 10000,
                      "https://s3-us-west-2.amazonaws.com/imagenetv2public/imagenetv2-matched-frequency.tar.gz",
                      "imagenetv2-matched-frequency-format-val"),
    _imagenet_variant("imagenet_sketch", "ImageNetSketch", "imagenet-sketch", 1000, 50889,
                      "https://github.com/HaohanWang/ImageNet-Sketch", "images"),
    _imagenet_variant("imagenet_a", "ImageNetA", "imagenet-adversarial", 200, 7500,
                      "https://github.com/hendrycks/natural-adv-examples", "imagenet-a"),
    _imagenet_variant("imagenet_r", "ImageNetR", "imagenet-rendition", 200, 30000,
                      "https://github.com/hendrycks/imagenet-r", "imagenet-r"),
)
CATALOG: Dict[str, DatasetEntry] = {entry.config_name: entry for entry in _ENTRIES}
ALIASES = {"DTD": "dtd"}  # other DATASET.NAMEs a dataset is registered under -> its config name
# Datasets that render themselves into DATA on first use (the toy world): config name -> DATASET.NAME.
RENDERED_DATASETS: Dict[str, str] = {"toy_shapes": "ToyShapes"}
