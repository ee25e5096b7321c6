"""Path guards for dataset modules: a missing folder or file is an error that names the dataset and
points to the layout it expects."""
import os

LAYOUT_HELP = "docs/DATASETS.md ('Preparing the datasets')"


class DatasetFileNotFound(FileNotFoundError):
    """A folder, file or image of a dataset is missing (train.py then names the doctor's command)."""


def dataset_folder(cfg, folder: str, dataset: str) -> str:
    """``<DATASET.ROOT>/<folder>``, which must exist."""
    root = cfg.DATASET.ROOT
    if not root:
        raise ValueError(f"{dataset}: DATASET.ROOT is empty; set it (or --root) to the folder holding '{folder}/'")
    path = os.path.join(os.path.abspath(os.path.expanduser(root)), folder)
    return require_dir(path, dataset)


def require_dir(path: str, dataset: str) -> str:
    return _require(path, dataset, os.path.isdir(path), "folder")


def require_file(path: str, dataset: str) -> str:
    return _require(path, dataset, os.path.isfile(path), "file")


def _require(path: str, dataset: str, exists: bool, kind: str) -> str:
    if not exists:
        raise DatasetFileNotFound(
            f"{dataset}: {kind} not found: {path}. The expected layout is described in {LAYOUT_HELP} "
            f"(subsection {dataset})."
        )
    return path
