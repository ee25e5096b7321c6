"""Split files, train/val/test splitting, base/new class halves and the few-shot cache.

Shared by every dataset module. The algorithms and their sequence of ``random`` calls follow CoOp
(``datasets/oxford_pets.py`` and ``datasets/dtd.py`` there), with one difference: every folder
listing is sorted before any random step, so the same data and seed give the same splits and
few-shot samples on every machine (and CoOp's, wherever CoOp's listing happens to be sorted).
The caller seeds ``random`` (``set_random_seed(cfg.SEED)``) before building a dataset, as CoOp does.

Split files and few-shot caches are JSON: ``{"train": [[path, label, classname], ...], "val": ...}``
with paths relative to a prefix folder, the format of CoOp's ``split_zhou_*.json``.
"""
import math
import os
import random
from collections import defaultdict
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from mutual_prompt.backend import DatasetBase, Datum, listdir_nohidden
from mutual_prompt.engine.utils import read_json, write_json
from mutual_prompt.labels import check_labels

LAYOUT_HELP = "the section 'Preparing the datasets' of README.md"
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SUBSAMPLE_CHOICES = ("all", "base", "new")

Items = List[Datum]
Split = Tuple[Items, Items, Items]


def dataset_folder(cfg, folder: str, dataset: str) -> str:
    """``<DATASET.ROOT>/<folder>``, which must exist."""
    root = cfg.DATASET.ROOT
    if not root:
        raise ValueError(f"{dataset}: DATASET.ROOT is empty; set it (or --root) to the folder holding '{folder}/'")
    path = os.path.join(os.path.abspath(os.path.expanduser(root)), folder)
    return require_dir(path, dataset)


def require_dir(path: str, dataset: str) -> str:
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"{dataset}: folder not found: {path}. The expected layout is described in {LAYOUT_HELP} "
            f"(subsection {dataset})."
        )
    return path


def require_file(path: str, dataset: str) -> str:
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{dataset}: file not found: {path}. The expected layout is described in {LAYOUT_HELP} "
            f"(subsection {dataset})."
        )
    return path


def make_datum(impath: str, label: int, classname: str, source: str) -> Datum:
    """A ``Datum``; a missing image raises an error that names it and ``source`` (what listed it)."""
    try:
        return Datum(impath=impath, label=label, classname=classname)
    except (FileNotFoundError, AssertionError) as e:  # Dassl's Datum asserts the file exists
        raise FileNotFoundError(f"{source} names the image {impath}, which does not exist") from e


def read_text_lines(path: str, dataset: str) -> List[str]:
    """Non-blank lines of a text file, stripped (also of Windows line endings)."""
    with open(require_file(path, dataset), "r", encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def list_class_folders(image_dir: str, ignored: Iterable[str] = ()) -> List[str]:
    """Sorted names of the non-hidden sub-folders of ``image_dir``, less ``ignored``."""
    skip = set(ignored)
    return [
        name
        for name in listdir_nohidden(image_dir, sort=True)
        if name not in skip and os.path.isdir(os.path.join(image_dir, name))
    ]


def list_images(folder: str) -> List[str]:
    """Sorted names of the non-hidden image files in ``folder`` (extension in any case).

    An empty class folder is an error, not a silently missing class.
    """
    names = [
        name
        for name in listdir_nohidden(folder, sort=True)
        if os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS and os.path.isfile(os.path.join(folder, name))
    ]
    if not names:
        raise ValueError(
            f"Class folder {folder} holds no images (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, any case)"
        )
    return names


def _to_records(items: Sequence[Datum], path_prefix: str) -> List[List[Any]]:
    records = []
    for item in items:
        rel = os.path.relpath(item.impath, path_prefix)
        if rel.startswith(os.pardir):
            raise ValueError(f"Image {item.impath} is not inside {path_prefix}; cannot store it relative to it")
        records.append([rel.replace(os.sep, "/"), item.label, item.classname])
    return records


def _from_records(records: Any, path_prefix: str, source: str, part: str) -> Items:
    if not isinstance(records, list):
        raise ValueError(f"{source}: '{part}' must be a list of [path, label, classname], got {type(records).__name__}")
    items = []
    for i, record in enumerate(records):
        if not (
            isinstance(record, (list, tuple))
            and len(record) == 3
            and isinstance(record[0], str)
            and isinstance(record[2], str)
        ):
            raise ValueError(f"{source}: '{part}'[{i}] must be [path, label, classname], got {record!r}")
        try:
            label = int(record[1])
        except (TypeError, ValueError):
            raise ValueError(f"{source}: '{part}'[{i}] has a label that is not an integer: {record[1]!r}") from None
        items.append(make_datum(os.path.join(path_prefix, record[0]), label, record[2], source))
    return items


def _read_parts(filepath: str, path_prefix: str, parts: Sequence[str], kind: str) -> List[Items]:
    data = read_json(filepath)
    source = f"{kind} {filepath}"
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object with keys {list(parts)}")
    missing = [p for p in parts if p not in data]
    if missing:
        raise ValueError(f"{source}: missing key(s) {missing}; expected {list(parts)}")
    return [_from_records(data[p], path_prefix, source, p) for p in parts]


def read_split(filepath: str, path_prefix: str) -> Split:
    """Read a CoOp split file (``split_zhou_*.json``); its paths are relative to ``path_prefix``."""
    print(f"Reading split from {filepath}")
    train, val, test = _read_parts(filepath, path_prefix, ("train", "val", "test"), "split file")
    return train, val, test


def save_split(train: Items, val: Items, test: Items, filepath: str, path_prefix: str) -> None:
    """Write a split file in CoOp's format, atomically."""
    split = {p: _to_records(items, path_prefix) for p, items in (("train", train), ("val", val), ("test", test))}
    write_json(split, filepath)
    print(f"Saved split to {filepath}")


def load_or_create_split(filepath: str, path_prefix: str, create: Callable[[], Split]) -> Split:
    """Read the split file if it exists; else ``create()`` the split and save it for later runs."""
    if os.path.exists(filepath):
        return read_split(filepath, path_prefix)
    train, val, test = create()
    save_split(train, val, test, filepath, path_prefix)
    return train, val, test


def split_trainval(trainval: Items, p_val: float = 0.2) -> Tuple[Items, Items]:
    """Move ``round(n * p_val)`` random items of each class from train to val (CoOp's draws)."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker: Dict[int, List[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train, val = [], []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val < 1:
            raise ValueError(
                f"Class {label} ({trainval[idxs[0]].classname!r}) has {len(idxs)} train+val image(s): too few to "
                f"hold out {p_val:.0%} for validation (at least one image)"
            )
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def split_class_images(
    images: List[str], p_trn: float, p_val: float, where: str
) -> Tuple[List[str], List[str], List[str]]:
    """Shuffle one class's images in place and cut them into train / val / test (CoOp's proportions)."""
    random.shuffle(images)
    n_total = len(images)
    n_train = round(n_total * p_trn)
    n_val = round(n_total * p_val)
    if n_train < 1 or n_val < 1 or n_total - n_train - n_val < 1:
        raise ValueError(
            f"{where}: {n_total} image(s) are too few to split {p_trn:.0%} train / {p_val:.0%} val / rest test "
            "with at least one image in each"
        )
    return images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :]


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Iterable[str] = (),
    new_cnames: Optional[Dict[str, str]] = None,
) -> Split:
    """Split a ``<image_dir>/<class>/<image>`` tree per class; labels follow the sorted folder names."""
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    categories = list_class_folders(image_dir, ignored)
    if not categories:
        raise ValueError(f"{image_dir} holds no class folders")
    train, val, test = [], [], []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, name) for name in list_images(category_dir)]
        parts = split_class_images(images, p_trn, p_val, category_dir)
        classname = (new_cnames or {}).get(category, category)
        for out, paths in zip((train, val, test), parts):
            out.extend(make_datum(p, label, classname, category_dir) for p in paths)
    return train, val, test


def subsample_classes(*datasets: Items, subsample: str = "all") -> List[Items]:
    """Keep the base half (the first ``ceil(n/2)`` labels of the first list) or the new half (the rest),
    relabelled from 0, in every list alike."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(f"DATASET.SUBSAMPLE_CLASSES must be one of {SUBSAMPLE_CHOICES}, got {subsample!r}")
    if subsample == "all":
        return list(datasets)
    labels = sorted({item.label for item in datasets[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    if not selected:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES {subsample}: the training split has {len(labels)} class(es), so its "
            f"{subsample} half is empty; base/new halves need at least 2 classes"
        )
    relabel = {y: y_new for y_new, y in enumerate(selected)}
    print(f"SUBSAMPLE {subsample.upper()} CLASSES!")
    return [
        [
            Datum(impath=item.impath, label=relabel[item.label], classname=item.classname)
            for item in items
            if item.label in relabel
        ]
        for items in datasets
    ]


def fewshot_cache_path(fewshot_dir: str, num_shots: int, seed: int) -> str:
    """CoOp's ``shot_{N}-seed_{SEED}`` stem, as JSON instead of pickle."""
    return os.path.join(fewshot_dir, f"shot_{num_shots}-seed_{seed}.json")


def load_or_create_fewshot(
    dataset, train: Items, val: Optional[Items], num_shots: int, seed: int, fewshot_dir: str, path_prefix: str
) -> Tuple[Items, Optional[Items]]:
    """``num_shots`` per class of train and ``min(num_shots, 4)`` of val (when given), cached and reused.

    ``dataset`` provides ``generate_fewshot_dataset`` (Dassl's sampler); the cache holds paths relative
    to ``path_prefix``. Delete ``fewshot_dir`` after changing a split file: the cache is not checked
    against it.
    """
    path = fewshot_cache_path(fewshot_dir, num_shots, seed)
    parts = ("train",) if val is None else ("train", "val")
    warn_small_classes(train, num_shots)
    if os.path.exists(path):
        print(f"Loading preprocessed few-shot data from {path}")
        loaded = _read_parts(path, path_prefix, parts, "few-shot cache")
        for part, cached, source in zip(parts, loaded, (train, val)):
            _check_cached_items(cached, source, f"few-shot cache {path}", part)
        return loaded[0], (loaded[1] if val is not None else None)
    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    if val is not None:
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    data = {"train": _to_records(train, path_prefix)}
    if val is not None:
        data["val"] = _to_records(val, path_prefix)
    print(f"Saving preprocessed few-shot data to {path}")
    write_json(data, path)
    return train, val


def warn_small_classes(train: Items, num_shots: int) -> None:
    """CoOp takes all images of a class smaller than ``num_shots``, silently; say so, per class."""
    by_label: Dict[int, Items] = defaultdict(list)
    for item in train:
        by_label[item.label].append(item)
    for label, items in sorted(by_label.items()):
        if len(items) < num_shots:
            print(f"Warning: class {items[0].classname!r} (label {label}) has {len(items)} train image(s), fewer "
                  f"than DATASET.NUM_SHOTS {num_shots}: using {len(items)}")


def _check_cached_items(cached: Items, source_items: Items, cache: str, part: str) -> None:
    """Every cached item must be an item of the split's ``part`` with the same label."""
    known = {(item.impath, item.label) for item in source_items}
    for item in cached:
        if (item.impath, item.label) not in known:
            raise ValueError(
                f"{cache}: its {part} item {item.impath} with label {item.label} is not in the split's {part} part "
                "with that label: the cache is stale (made from another split file); delete it to sample again"
            )


def split_source(dataset) -> str:
    """What to name in an error about a dataset's labels: its split file, or the dataset."""
    path = getattr(dataset, "split_path", "")
    return f"split file {path}" if path else f"dataset {type(dataset).__name__}"


def fewshot_and_subsample(
    dataset, cfg, train: Items, val: Optional[Items], test: Items, fewshot_dir: str, path_prefix: str
) -> Tuple[Items, Optional[Items], Items]:
    """CoOp's order: few-shot sampling on all classes (``DATASET.NUM_SHOTS`` >= 1), then the
    ``DATASET.SUBSAMPLE_CLASSES`` half of train, val and test. ``val`` None: no validation split."""
    source = split_source(dataset)
    if not train:
        raise ValueError(f"{source}: the training split is empty")
    check_labels({"train": train, "val": val, "test": test}, max(item.label for item in train) + 1, source)
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots >= 1:
        train, val = load_or_create_fewshot(dataset, train, val, num_shots, cfg.SEED, fewshot_dir, path_prefix)
    subsample = cfg.DATASET.SUBSAMPLE_CLASSES
    if val is None:
        train, test = subsample_classes(train, test, subsample=subsample)
    else:
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
    return train, val, test


class SplitFileDataset(DatasetBase):
    """A dataset whose train/val/test split lives in CoOp's ``split_zhou_<split_name>.json``.

    Subclasses set ``dataset_dir`` (the folder under ``DATASET.ROOT``), ``image_folder`` (the
    images' folder inside it, to which the split's paths are relative; "" = the dataset folder
    itself) and ``split_name``, and write ``create_split()``, which builds the split from the
    dataset's own files the first time (it is saved and reused afterwards). Few-shot sampling and
    the base/new halves follow, as for every dataset. Errors name the dataset by its class name.
    """

    image_folder = ""
    split_name = ""

    def __init__(self, cfg) -> None:
        name = type(self).__name__
        self.dataset_dir = dataset_folder(cfg, type(self).dataset_dir, name)
        self.image_dir = self.dataset_dir
        if self.image_folder:
            self.image_dir = require_dir(os.path.join(self.dataset_dir, self.image_folder), name)
        self.split_path = os.path.join(self.dataset_dir, f"split_zhou_{self.split_name}.json")
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")

        train, val, test = load_or_create_split(self.split_path, self.image_dir, self.create_split)
        train, val, test = fewshot_and_subsample(self, cfg, train, val, test, self.split_fewshot_dir, self.image_dir)
        super().__init__(train_x=train, val=val, test=test)

    def create_split(self) -> Split:
        raise NotImplementedError
