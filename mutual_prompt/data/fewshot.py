"""The few-shot cache and the base/new class halves, applied in CoOp's order.

Few-shot samples are drawn by the host's ``generate_fewshot_dataset`` (Dassl's sampler, or the
built-in runtime's) and cached as JSON in CoOp's ``split_fewshot/shot_{N}-seed_{SEED}`` files, so a
later run with the same shots and seed reuses them. A cache is written once, under a lock beside it,
and never overwritten; it records the sha256 of the split file it was sampled from
(``SPLIT_SHA256_KEY``), and a cache sampled from another split file is refused.
"""
import math
import os
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

from mutual_prompt.backend import Datum
from mutual_prompt.files import exclusive_lock, write_json
from mutual_prompt.data.labels import check_labels

from .split_files import Items, items_of, read_record_file, to_records

SUBSAMPLE_CHOICES = ("all", "base", "new")
SPLIT_SHA256_KEY = "split_sha256"  # in a few-shot cache: the sha256 of the split file it was sampled from


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
    dataset, train: Items, val: Optional[Items], *, num_shots: int, seed: int, fewshot_dir: str, path_prefix: str
) -> Tuple[Items, Optional[Items]]:
    """``num_shots`` per class of train and ``min(num_shots, 4)`` of val (when given), cached and reused.

    ``dataset`` provides ``generate_fewshot_dataset`` (Dassl's sampler) and ``split_sha256`` (the split
    file's hash, "" or absent without one); the cache holds paths relative to ``path_prefix``. Runs
    started together sample once: the others wait on ``<cache>.lock`` and read the cache. A cache made
    from another split file (another hash; without the hash: a cached item not in the split with its
    label and class name) is a stale-cache error: delete ``fewshot_dir`` after changing a split file.
    """
    path = fewshot_cache_path(fewshot_dir, num_shots, seed)
    warn_small_classes(train, num_shots)
    if not os.path.exists(path):
        with exclusive_lock(path + ".lock"):
            if not os.path.exists(path):
                return _sample_and_cache(dataset, train, val, num_shots, path, path_prefix)
    return _read_cache(dataset, train, val, path, path_prefix)


def _sample_and_cache(
    dataset, train: Items, val: Optional[Items], num_shots: int, path: str, path_prefix: str
) -> Tuple[Items, Optional[Items]]:
    train = dataset.generate_fewshot_dataset(train, num_shots=num_shots)
    if val is not None:
        val = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
    data = {"train": to_records(train, path_prefix)}
    if val is not None:
        data["val"] = to_records(val, path_prefix)
    split_sha256 = getattr(dataset, "split_sha256", "")
    if split_sha256:
        data[SPLIT_SHA256_KEY] = split_sha256
    print(f"Saving preprocessed few-shot data to {path}")
    write_json(data, path, overwrite=False)
    return train, val


def _read_cache(
    dataset, train: Items, val: Optional[Items], path: str, path_prefix: str
) -> Tuple[Items, Optional[Items]]:
    print(f"Loading preprocessed few-shot data from {path}")
    parts = ("train",) if val is None else ("train", "val")
    data, _ = read_record_file(path, parts, "few-shot cache")
    source = f"few-shot cache {path}"
    _check_split_sha256(data, dataset, source)
    loaded = [items_of(data, part, path_prefix, source) for part in parts]
    for part, cached, split_items in zip(parts, loaded, (train, val)):
        _check_cached_items(cached, split_items, source, part)
    return loaded[0], (loaded[1] if val is not None else None)


def _check_split_sha256(data: dict, dataset, cache: str) -> None:
    """A cache that records the hash of the split file it was sampled from must match the dataset's."""
    if SPLIT_SHA256_KEY not in data:
        return
    cached = data[SPLIT_SHA256_KEY]
    current = getattr(dataset, "split_sha256", "")
    if cached != current:
        raise ValueError(
            f"{cache} was sampled from a split file with sha256 {cached}, but {split_source(dataset)} has sha256 "
            f"{current or '(none: no split file)'}: the split file changed since; delete the cache to sample again"
        )


def warn_small_classes(train: Items, num_shots: int) -> None:
    """CoOp takes all images of a class smaller than ``num_shots``, silently; say so, per class."""
    by_label: Dict[int, Items] = defaultdict(list)
    for item in train:
        by_label[item.label].append(item)
    for label, items in sorted(by_label.items()):
        if len(items) < num_shots:
            print(f"Warning: class {items[0].classname!r} (label {label}) has {len(items)} train image(s), fewer "
                  f"than DATASET.NUM_SHOTS {num_shots}: using {len(items)}")


def _check_cached_items(cached: Items, split_items: Items, cache: str, part: str) -> None:
    """Every cached item must be an item of the split's ``part`` with the same label and class name."""
    classnames = {(item.impath, item.label): item.classname for item in split_items}
    for item in cached:
        key = (item.impath, item.label)
        if key not in classnames:
            raise ValueError(
                f"{cache}: its {part} item {item.impath} with label {item.label} is not in the split's {part} part "
                "with that label: the cache is stale (made from another split file); delete it to sample again"
            )
        if item.classname != classnames[key]:
            raise ValueError(
                f"{cache}: its {part} item {item.impath} (label {item.label}) has the class name {item.classname!r}, "
                f"but the split names it {classnames[key]!r}: the cache is stale (made from another split file); "
                "delete it to sample again"
            )


def split_source(dataset) -> str:
    """What to name in an error about a dataset's labels: its split file, or the dataset."""
    path = getattr(dataset, "split_path", "")
    return f"split file {path}" if path else f"dataset {type(dataset).__name__}"


def fewshot_and_subsample(
    dataset, cfg, *, train: Items, val: Optional[Items], test: Items
) -> Tuple[Items, Optional[Items], Items]:
    """CoOp's order: few-shot sampling on all classes (``DATASET.NUM_SHOTS`` >= 1), then the
    ``DATASET.SUBSAMPLE_CLASSES`` half of train, val and test. ``val`` None: no validation split.
    The few-shot cache lives in ``dataset.split_fewshot_dir`` with paths relative to ``dataset.image_dir``."""
    source = split_source(dataset)
    if not train:
        raise ValueError(f"{source}: the training split is empty")
    check_labels({"train": train, "val": val, "test": test}, None, source)
    num_shots = cfg.DATASET.NUM_SHOTS
    if num_shots >= 1:
        train, val = load_or_create_fewshot(dataset, train, val, num_shots=num_shots, seed=cfg.SEED,
                                            fewshot_dir=dataset.split_fewshot_dir, path_prefix=dataset.image_dir)
    subsample = cfg.DATASET.SUBSAMPLE_CLASSES
    if val is None:
        train, test = subsample_classes(train, test, subsample=subsample)
    else:
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
    return train, val, test
