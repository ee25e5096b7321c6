"""What dataset modules build on: path guards (``paths``), sorted folder and text-file listing
(``listing``), CoOp split files and the splitting that creates them (``split_files``), the few-shot
cache and base/new class halves (``fewshot``), and ``SplitFileDataset`` (``dataset``)."""
from .dataset import SplitFileDataset
from .fewshot import fewshot_and_subsample, subsample_classes
from .listing import list_class_folders, list_images, read_text_lines
from .paths import dataset_folder, require_dir, require_file
from .split_files import (
    Split,
    make_datum,
    read_and_split_data,
    read_split,
    save_split,
    split_class_images,
    split_trainval,
)

__all__ = [
    "Split",
    "SplitFileDataset",
    "dataset_folder",
    "fewshot_and_subsample",
    "list_class_folders",
    "list_images",
    "make_datum",
    "read_and_split_data",
    "read_split",
    "read_text_lines",
    "require_dir",
    "require_file",
    "save_split",
    "split_class_images",
    "split_trainval",
    "subsample_classes",
]
